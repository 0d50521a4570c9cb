"""Ages for the faces in any photo, with a calibrated uncertainty: ``agezoo predict``.

A predictor owns its preprocessing (the training alignment: same crop size, margin and
detector), its model and its calibration temperature, and offers one call for a batch of
aligned faces. Three backends sit behind one interface: PyTorch (``torch_impl.predictor``),
Keras (``tf_impl.predictor``) and ONNX Runtime (``common.onnx_predictor``, which needs neither
PyTorch nor TensorFlow). Which one is picked follows from what the model reference points at.

Usage:
    agezoo predict PHOTO_OR_FOLDER ... --model RUN_DIR|FILE|NAME [--json|--csv] [--annotate DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.calibration import INTERVAL, central_interval
from common.faces import AlignSpec, align_center, align_detection, detect, load_rgb
from common.losses import decode_outputs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
STAGES = ("decode", "detect", "align", "infer")
BATCH = 64  # faces per forward call
CHUNK = 256  # photos aligned before their faces go through the model


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
            num_classes=1 if cfg["loss"]["name"] == "l2" else int(data["num_classes"]),
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
    method: str  # how the face was found: mtcnn | haar_eyes | haar_face | center


@dataclass
class Failure:
    file: str
    reason: str


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
            outputs are averaged (logits, or ages for L2). Measured (``benchmarks.flip``):
            0.11–0.17 years lower MAE on All-Age-Faces in both frameworks, coverage of the
            card's temperature kept; twice the model time, which is 1–4 % of a photo's.
    """

    def __init__(
        self, card: ModelCard, forward: Callable[[np.ndarray], np.ndarray], flip: bool = True
    ):
        self.card, self.forward, self.flip = card, forward, flip
        self.spec = card.spec

    def outputs(self, faces: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
        """Raw outputs for aligned uint8 faces (N, S, S, 3), in batches."""
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
        if self.card.loss == "l2":
            low = high = np.full(len(age), np.nan)
        else:
            low, high = central_interval(out, INTERVAL, t)
        return {"age": age, "std": std, "low": low, "high": high}

    def predict_paths(
        self,
        paths: Sequence[str | Path],
        every_face: bool = True,
        fallback_center: bool = False,
        progress: bool = False,
        workers: int = 2,
    ) -> PredictResult:
        """Detects, aligns and predicts every face in every photo; failures are named, not raised.

        Photos are decoded, detected and aligned on a thread pool (OpenCV, Pillow and the
        detector release the GIL); the aligned faces then go through the model in batches.
        """
        from tqdm import tqdm

        result = PredictResult(images=len(paths))

        def prepare(path):
            return path, self._faces_of(Path(path), every_face, fallback_center)

        bar = tqdm(total=len(paths), desc="photos", unit="img", disable=not progress)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for start in range(0, len(paths), CHUNK):  # bounded memory on huge folders
                crops, meta = [], []
                for path, (faces, error, seconds) in pool.map(
                    prepare, paths[start : start + CHUNK]
                ):
                    bar.update()
                    for stage, dt in seconds.items():  # summed here, in one thread
                        result.timings[stage] += dt
                    if error:
                        result.failures.append(Failure(str(path), error))
                        continue
                    for k, (crop, box, method) in enumerate(faces):
                        crops.append(crop)
                        meta.append((str(path), k, box, method))
                if crops:
                    self._infer(np.stack(crops), meta, result)
        bar.close()
        return result

    def _infer(self, crops: np.ndarray, meta: list, result: PredictResult) -> None:
        t0 = time.perf_counter()
        est = self.estimate(crops)
        result.timings["infer"] += time.perf_counter() - t0
        for i, (file, k, box, method) in enumerate(meta):
            values = (float(est[key][i]) for key in ("age", "std", "low", "high"))
            result.faces.append(FaceAge(file, k, box, *values, method))

    def _faces_of(self, path: Path, every: bool, fallback_center: bool):
        """(aligned faces with box and method, error or "", seconds per stage) of one photo."""
        t0 = time.perf_counter()
        try:
            image = load_rgb(path)
        except ValueError as exc:
            return [], _reason(exc, path), {}
        t1 = time.perf_counter()
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


# An exported model must give the run's logits to float32 rounding. Rounding grows with the size
# of the logits, so the bound is relative to the largest of them (at least 1): an absolute 1e-4
# failed now and then on a trained model whose logits reach the tens.
EXPORT_TOLERANCE = 1e-4


def logit_gap(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got − ref| over max(1, max |ref|): how far an exported model's logits stray."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(
        np.abs(np.asarray(got, dtype=np.float64) - ref).max() / max(1.0, np.abs(ref).max())
    )


def images_per_second(forward: Callable, faces: np.ndarray, repeats: int = 3) -> float:
    """Inference speed of ``forward`` on a batch of four copies of ``faces``, after a warm-up."""
    batch = np.concatenate([faces] * 4)
    forward(batch)
    t0 = time.perf_counter()
    for _ in range(repeats):
        forward(batch)
    return round(repeats * len(batch) / (time.perf_counter() - t0), 1)


def _reason(exc: Exception, path: Path) -> str:
    """The error text without the file name the caller prints anyway."""
    text = str(exc)
    prefix = f"{path.name}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Photos named directly (always tried) and the image files inside named folders."""
    paths, missing = [], []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths += sorted(
                p
                for p in item.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
        elif item.is_file():
            paths.append(item)
        else:
            missing.append(Failure(str(item), "no such file or folder"))
    return paths, missing


# ------------------------------------------------------------------ finding the model


def load_predictor(ref: str | Path | None = None, device: str = "auto") -> Predictor:
    """A predictor for a run folder, a model file (``.pt``, ``.keras``, ``.onnx``) or a name.

    Run folders hold ``best.pt`` (PyTorch) or ``model.keras`` (Keras). A name is looked up among
    the trained age models of the weights registry; ``None`` takes the registry's default.
    """
    if ref is None:
        ref = _default_model_name()
    path = Path(ref)
    if path.is_dir():
        if (path / "best.pt").is_file():
            from torch_impl.predictor import load_torch_predictor

            return load_torch_predictor(path, device)
        if (path / "model.keras").is_file():
            from tf_impl.predictor import load_keras_predictor

            return load_keras_predictor(path)
        raise ModelNotFoundError(f"{path}: a folder with neither best.pt nor model.keras")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            from common.onnx_predictor import load_onnx_predictor

            return load_onnx_predictor(path)
        if suffix in (".pt", ".pth"):
            from torch_impl.predictor import load_torch_predictor

            return load_torch_predictor(path, device)
        if suffix == ".keras":
            from tf_impl.predictor import load_keras_predictor

            return load_keras_predictor(path)
        raise ModelNotFoundError(f"{path}: not a model file (.pt, .keras or .onnx)")
    return load_predictor(_registered_file(str(ref)), device)


def _default_model_name() -> str:
    import weights

    name = weights.default_age_model()
    if name is None:
        raise ModelNotFoundError(
            "no model named and no default age model is registered yet: pass --model RUN_DIR "
            "(a folder from make train-torch / make train-tf), a .pt / .keras / .onnx file, or "
            f"one of the registered age models ({', '.join(weights.age_models()) or 'none'})"
        )
    return name


def _registered_file(name: str) -> Path:
    import weights

    try:
        return weights.age_model_file(name)
    except KeyError as exc:
        known = ", ".join(weights.age_models()) or "none registered yet"
        raise ModelNotFoundError(
            f"{name}: not a run folder, a model file or a registered age model ({known})"
        ) from exc


# ------------------------------------------------------------------ output


def as_table(result: PredictResult) -> str:
    rows = [("file", "face", "box (x,y,w,h)", "age", "± std", "90% interval", "found by")]
    for f in result.faces:
        box = ",".join(str(v) for v in f.box) if f.box else "-"
        interval = f"{f.low:.1f}–{f.high:.1f}" if np.isfinite(f.low) else "-"
        std = f"{f.std:.1f}" if np.isfinite(f.std) else "-"
        rows.append((f.file, str(f.face), box, f"{f.age:.1f}", std, interval, f.method))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def as_json(result: PredictResult, card: ModelCard, flip: bool) -> str:
    return json.dumps(
        {
            "model": asdict(card),
            "interval": INTERVAL,
            "flip": flip,
            "faces": [asdict(f) for f in result.faces],
            "failures": [asdict(f) for f in result.failures],
        },
        indent=1,
        default=_nan_to_none,
    )


def _nan_to_none(value):
    return None if isinstance(value, float) and not np.isfinite(value) else str(value)


def as_csv(result: PredictResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "face", "x", "y", "w", "h", "age", "std", "low90", "high90", "method"])
    for f in result.faces:
        box = f.box or ("", "", "", "")
        writer.writerow(
            [f.file, f.face, *box, *(f"{v:.2f}" for v in (f.age, f.std, f.low, f.high)), f.method]
        )
    return buf.getvalue()


def annotate(result: PredictResult, out_dir: str | Path) -> list[Path]:
    """Writes each photo with its faces boxed and labelled "34 ± 4" into ``out_dir``."""
    from PIL import Image, ImageDraw, ImageFont

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[FaceAge]] = {}
    for f in result.faces:
        by_file.setdefault(f.file, []).append(f)
    written: list[Path] = []
    for file, faces in by_file.items():
        image = Image.fromarray(load_rgb(file))
        draw = ImageDraw.Draw(image)
        scale = max(image.size) / 600
        font = ImageFont.load_default(size=max(12, round(22 * scale)))
        width = max(2, round(3 * scale))
        for f in faces:
            label = f"{f.age:.0f}" + (f" ± {f.std:.0f}" if np.isfinite(f.std) else "")
            x, y, w, h = f.box or (0, 0, *image.size)
            draw.rectangle((x, y, x + w, y + h), outline=(40, 220, 40), width=width)
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            tw, th = right - left, bottom - top
            ty = y - th - 3 * width if y - th - 3 * width >= 0 else y + h
            draw.rectangle((x, ty, x + tw + 2 * width, ty + th + 3 * width), fill=(40, 220, 40))
            draw.text((x + width - left, ty + width - top), label, fill=(0, 0, 0), font=font)
        dest = out_dir / f"{Path(file).stem}.annotated.jpg"
        n = 1
        while dest in written:  # two inputs with the same name from different folders
            dest = out_dir / f"{Path(file).stem}.{n}.annotated.jpg"
            n += 1
        image.save(dest, quality=92)
        written.append(dest)
    return written


# ------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agezoo predict",
        description="Estimate the age of every face in photos, with a calibrated uncertainty.",
    )
    parser.add_argument("inputs", nargs="+", help="photos and/or folders of photos")
    parser.add_argument(
        "--model",
        "-m",
        help="run folder (best.pt / model.keras), model file (.pt, .keras, .onnx) or registered "
        "age model name; default: the registry's default age model",
    )
    parser.add_argument("--onnx", help="an exported .onnx model (runs on onnxruntime alone)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    parser.add_argument("--annotate", metavar="DIR", help="write annotated copies of the photos")
    parser.add_argument(
        "--largest", action="store_true", help="only the largest face of each photo"
    )
    parser.add_argument(
        "--fallback-center",
        action="store_true",
        help="when no face is found, treat the whole photo as a tight face crop",
    )
    parser.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        help="skip the test-time flip (by default each face's outputs are averaged with its "
        "mirror image's: about 2 %% lower MAE, the model's time doubled)",
    )
    parser.add_argument("--device", default="auto", help="PyTorch device (auto, cpu, cuda)")
    return parser


def predict_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.onnx and args.model:
        print("error: give --model or --onnx, not both", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(args.onnx or args.model, args.device)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    predictor.flip = args.flip
    paths, failures = expand_inputs(args.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = predictor.predict_paths(
            paths,
            every_face=not args.largest,
            fallback_center=args.fallback_center,
            progress=len(paths) > 1 and sys.stderr.isatty(),
        )
    result.failures = failures + result.failures
    if args.json:
        print(as_json(result, predictor.card, predictor.flip))
    elif args.csv:
        print(as_csv(result), end="")
    elif result.faces:
        print(as_table(result))
    if args.annotate:
        written = annotate(result, args.annotate)
        print(f"annotated {len(written)} photos in {args.annotate}", file=sys.stderr)
    for failure in result.failures:
        print(f"{failure.file}: {failure.reason}", file=sys.stderr)
    if not paths and not failures:
        print("error: no photos found in the given folders", file=sys.stderr)
        return 1
    return 1 if result.failures else 0


def main(argv: list[str] | None = None) -> int:
    """``agezoo`` console script: ``agezoo predict ...`` and ``agezoo export ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"predict": predict_main, "export": _export_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(
            "usage: agezoo {predict,export} ...\n\n"
            "  predict   ages of the faces in photos (agezoo predict --help)\n"
            "  export    a run folder to ONNX (PyTorch) or .keras + SavedModel (Keras)",
            file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


def _export_main(argv: list[str]) -> int:
    if argv and Path(argv[0]).is_dir() and (Path(argv[0]) / "model.keras").is_file():
        from tf_impl.export import main as export
    else:
        from torch_impl.export import main as export
    return export(argv)


if __name__ == "__main__":
    raise SystemExit(main())
