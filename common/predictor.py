"""The predictor interface, below every backend: a model card, a predictor, its results.

A predictor owns its preprocessing (the training alignment: same crop size, margin and
detector), its model and its calibration temperature, and offers one call for a batch of
aligned faces and one for photos. Each backend (PyTorch, Keras, ONNX Runtime) supplies only a
forward function and the card; ``agezoo.backends`` picks the backend a model reference needs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.calibration import INTERVAL, central_interval
from common.faces import MIN_SIDE, AlignSpec, align_center, align_detection, detect, too_small
from common.inputs import Failure, Still, expand_inputs, stills
from common.losses import decode_outputs, loss_spec, num_outputs

STAGES = ("decode", "detect", "align", "infer")
BATCH = 64  # faces per forward call
CHUNK = 256  # photos aligned before their faces go through the model
# agezoo predict's default for the test-time flip: off. With the released default, one pass is
# 1.6-1.9x the photos/s on tight crops (2.9x the pip peer against 1.9x with the flip) for 0.08
# years of validation MAE (benchmarks/RESULTS.md, "The test-time flip off by default").
FLIP = False


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names no run folder, file or registered model."""


@dataclass(frozen=True)
class ModelCard:
    """What a predictor needs to know besides the weights; stored with every exported model."""

    framework: str  # torch | keras | onnx
    arch: str
    loss: str
    num_classes: int
    size: int  # aligned crop side the model was trained on
    margin: float
    detector: str
    temperature: float = 1.0
    calibration: dict | None = None
    preprocess: str = ""  # the training cache key
    source: str = ""  # the run folder or file it came from
    members: int = 1  # models whose distributions are averaged (common.ensemble)

    @property
    def spec(self) -> AlignSpec:
        return AlignSpec(size=self.size, margin=self.margin, detector=self.detector)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_config(cls, framework: str, cfg: dict, calibration: dict | None, **extra):
        """From a run's resolved config (``config.yaml`` or a checkpoint's ``config``)."""
        data = cfg["data"]
        return cls(
            framework=framework,
            arch=cfg["model"]["name"],
            loss=cfg["loss"]["name"],
            num_classes=num_outputs(cfg["loss"]["name"], int(data["num_classes"])),
            size=int(data["size"]),
            margin=float(data["margin"]),
            detector=data.get("detector", "mtcnn"),
            temperature=float(calibration["temperature"]) if calibration else 1.0,
            calibration=calibration,
            **extra,
        )

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class FaceAge:
    """One face's prediction: where it is, the age (expectation), its std and 90 % interval."""

    file: str
    face: int  # 0 = the largest face in the photo
    box: tuple[int, int, int, int] | None  # x, y, w, h; None when the photo was centre-cropped
    age: float
    std: float
    low: float
    high: float
    method: str  # how the face was found: a common.detectors.METHODS entry
    frame: int | None = None  # the video frame, for a face in a video
    time: float | None = None  # its time in the video, seconds


@dataclass
class PredictResult:
    faces: list[FaceAge] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    images: int = 0


class Predictor:
    """Preprocessing + model + calibration behind one call.

    Args:
        card: the model's card (crop geometry, detector, loss, temperature).
        forward: float32 (N, S, S, 3) RGB in 0..255 → (N, K) logits or (N, 1) ages.
        flip: test-time flip: each face also goes through the model mirrored, and the two
            outputs are averaged (logits, or ages for L2); twice the model's time. Measured
            (``benchmarks.flip``, ``benchmarks.predict_speed``): 0.11–0.17 years lower MAE on
            All-Age-Faces in both frameworks, 0.08 for the released default, coverage of the
            card's temperature kept. Off by default (``FLIP``).
    """

    def __init__(
        self,
        card: ModelCard,
        forward: Callable[[np.ndarray], np.ndarray],
        flip: bool = FLIP,
        batch_size: int = BATCH,
    ):
        self.card, self.forward, self.flip = card, forward, flip
        self.batch_size = batch_size  # faces per forward call; the backend's fastest
        self.spec = card.spec

    def use_detector(self, name: str) -> None:
        """Finds faces with another detector than the card's (the alignment stays the same)."""
        self.card = dataclasses.replace(self.card, detector=name)
        self.spec = self.card.spec

    def outputs(self, faces: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Raw outputs for aligned uint8 faces (N, S, S, 3), in batches (of ``batch_size``,
        default the predictor's)."""
        batch_size = batch_size or self.batch_size
        if faces.ndim != 4 or faces.shape[1:] != (self.spec.size, self.spec.size, 3):
            raise ValueError(
                f"faces must be (N, {self.spec.size}, {self.spec.size}, 3), got {faces.shape}"
            )
        parts = []
        for i in range(0, len(faces), batch_size):
            batch = faces[i : i + batch_size].astype(np.float32)
            out = np.asarray(self.forward(batch))
            if self.flip:  # the mirror image: width is axis 2
                out = (out + np.asarray(self.forward(np.ascontiguousarray(batch[:, :, ::-1])))) / 2
            parts.append(out)
        return np.concatenate(parts) if parts else np.zeros((0, self.card.num_classes))

    def estimate(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        """``age``, ``std``, ``low``, ``high`` (the 90 % interval) for aligned uint8 faces."""
        out = self.outputs(faces)
        t = self.card.temperature
        age, std = decode_outputs(out, self.card.loss, t)
        if loss_spec(self.card.loss).distribution:
            low, high = central_interval(out, INTERVAL, t)
        else:
            low = high = np.full(len(age), np.nan)
        return {"age": age, "std": std, "low": low, "high": high}

    def predict_paths(self, paths: Sequence[str | Path], **kwargs) -> PredictResult:
        """:meth:`predict_inputs` on photo and video paths."""
        return self.predict_inputs(paths, **kwargs)

    def predict_inputs(
        self,
        items: Sequence,
        every_face: bool = True,
        fallback_center: bool = False,
        progress: bool = False,
        workers: int = 2,
        video_every: int = 1,
    ) -> PredictResult:
        """Every face in photos, arrays, PIL images and video frames; failures named, not raised.

        Photos are decoded, detected and aligned on a thread pool (OpenCV, Pillow, dlib and the
        detectors release the GIL); the aligned faces then go through the model in batches.
        Video frames are read in order (``video_every``: every N-th frame).
        """
        from tqdm import tqdm

        result = PredictResult(images=0)
        bar = tqdm(desc="images", unit="img", disable=not progress)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for chunk in _chunks(stills(items, video_every), CHUNK):  # bounded memory
                todo = [s for s in chunk if isinstance(s, Still)]
                result.failures += [f for f in chunk if isinstance(f, Failure)]
                result.images += len(todo)
                crops, meta = [], []
                jobs = pool.map(lambda s: (s, self._faces_of(s, every_face, fallback_center)), todo)
                for still, (faces, error, seconds) in jobs:
                    bar.update()
                    for stage, dt in seconds.items():  # summed here, in one thread
                        result.timings[stage] += dt
                    if error:
                        where = (
                            still.file
                            if still.frame is None
                            else f"{still.file} frame {still.frame}"
                        )
                        result.failures.append(Failure(where, error))
                        continue
                    for k, (crop, box, method) in enumerate(faces):
                        crops.append(crop)
                        meta.append((still, k, box, method))
                if crops:
                    self._infer(np.stack(crops), meta, result)
        bar.close()
        return result

    def _infer(self, crops: np.ndarray, meta: list, result: PredictResult) -> None:
        t0 = time.perf_counter()
        est = self.estimate(crops)
        result.timings["infer"] += time.perf_counter() - t0
        for i, (still, k, box, method) in enumerate(meta):
            values = (float(est[key][i]) for key in ("age", "std", "low", "high"))
            result.faces.append(
                FaceAge(still.file, k, box, *values, method, still.frame, still.time)
            )

    def _faces_of(self, still: Still, every: bool, fallback_center: bool):
        """(aligned faces with box and method, error or "", seconds per stage) of one image."""
        t0 = time.perf_counter()
        try:
            image = still.load()
        except ValueError as exc:
            return [], _reason(exc, Path(still.file)), {}
        t1 = time.perf_counter()
        if min(image.shape[:2]) < MIN_SIDE:
            return [], too_small(image), {}
        try:
            found = detect(image, self.spec.detector, every=every)
        except Exception as exc:  # a detector failure costs this photo, not the whole run
            return [], f"face detection failed ({type(exc).__name__}: {exc})", {}
        t2 = time.perf_counter()
        faces = []
        for face in found:
            aligned = align_detection(image, self.spec, face)
            faces.append((aligned.image, face.box, face.method))
        if not faces and fallback_center:  # a tight face chip: the whole photo is the face
            faces.append((align_center(image, self.spec).image, None, "center"))
        t3 = time.perf_counter()
        seconds = {"decode": t1 - t0, "detect": t2 - t1, "align": t3 - t2}
        if not faces:
            return [], "no face found (use --fallback-center for tight face crops)", seconds
        return faces, "", seconds


def _chunks(iterable: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _reason(exc: Exception, path: Path) -> str:
    """The error text without the file name the caller prints anyway."""
    text = str(exc)
    prefix = f"{path.name}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


__all__ = [
    "BATCH",
    "CHUNK",
    "FLIP",
    "STAGES",
    "FaceAge",
    "Failure",
    "ModelCard",
    "ModelNotFoundError",
    "PredictResult",
    "Predictor",
    "expand_inputs",
]
