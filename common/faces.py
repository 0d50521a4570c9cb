"""Face loading, detection and alignment, the same for training and for predict.

Eyes come from a data set's landmarks when it has them, else from a detector: MTCNN's five
points (the ``mtcnn`` package, on TensorFlow), else OpenCV's Haar face and eye cascades, else
the Haar face box. Every face comes out as a square uint8 RGB crop with the eyes at fixed
positions. When no face is found the image is centre-cropped and the fallback is counted, never
raised (predict reports it instead).
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

# FG-NET's 68-point markup (not the iBUG order): 27-30 outline the eye on the image's left
# (corners 27, 29; lids 28, 30; pupil 31), 32-35 the eye on the image's right (pupil 36).
# Checked by drawing the indices on FG-NET images; the contour mean is steadier than the pupil,
# which moves with the gaze.
FGNET_LEFT_EYE = (27, 28, 29, 30)
FGNET_RIGHT_EYE = (32, 33, 34, 35)
# All-Age-Faces' 49 points: 0-based rows 19-24 outline the image-left eye, 25-30 the image-right
# one (checked by drawing them).
AAF_LEFT_EYE = tuple(range(19, 25))
AAF_RIGHT_EYE = tuple(range(25, 31))
EYE_POINTS = {68: (FGNET_LEFT_EYE, FGNET_RIGHT_EYE), 49: (AAF_LEFT_EYE, AAF_RIGHT_EYE)}

# Landmark eyes are trusted only inside these bounds (else the image takes the detector path).
MAX_EYE_ANGLE_DEG = 60.0  # FG-NET has genuinely tilted heads up to 45°
EYE_DISTANCE_RANGE = (0.08, 0.7)  # fraction of the image width

# Where the eyes sit relative to an OpenCV frontal-face box (fractions of its width / height),
# and the face box a centred fallback assumes. Measured on FG-NET against its landmarks
# (benchmarks/eye_geometry.py).
HAAR_EYE_X = (0.30, 0.70)
HAAR_EYE_Y = 0.39

METHODS = ("landmarks", "mtcnn", "haar_eyes", "haar_face", "center")
DETECTORS = ("mtcnn", "haar")

# MTCNN detections below this confidence, or with eyes closer than this many pixels, are not
# trusted (the Haar path gets its turn).
MTCNN_MIN_CONFIDENCE = 0.9
MIN_EYE_DISTANCE_PX = 4.0


@dataclass(frozen=True)
class AlignSpec:
    """Output geometry: a ``size`` × ``size`` crop, eyes on a horizontal line.

    A tight face puts the eyes 36 % of the width apart, 42 % from the top; ``margin`` adds that
    fraction of context on every side (0.2 → the crop covers 1.2× the tight face).
    """

    size: int = 224
    margin: float = 0.2
    detector: str = "mtcnn"  # for images without landmarks: mtcnn (Haar after it) or haar

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; known: {list(DETECTORS)}")

    def eye_targets(self) -> np.ndarray:
        """(2, 2) target pixel positions of the image-left and image-right eye."""
        half = 0.36 / (1 + self.margin) / 2
        y = 0.5 - (0.5 - 0.42) / (1 + self.margin)
        return np.array([[0.5 - half, y], [0.5 + half, y]]) * self.size


@dataclass
class AlignedFace:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    method: str  # one of METHODS
    matrix: np.ndarray  # (2, 3) affine map from source pixels to output pixels
    eyes: np.ndarray  # (2, 2) source eye positions that were used
    box: tuple[int, int, int, int] | None = None  # detected face (x, y, w, h), if any
    rejected: str = ""  # why the landmarks were not used, when they were given but implausible


@dataclass
class Detection:
    """One face found in a photo: its box, its two eye centres when known, and how."""

    box: tuple[int, int, int, int]  # x, y, w, h in source pixels
    eyes: np.ndarray | None = field(default=None, repr=False)  # (2, 2) image-left, image-right
    score: float = 1.0
    method: str = "haar_face"  # mtcnn | haar_eyes | haar_face

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


def load_rgb(path: str | Path) -> np.ndarray:
    """Reads an image as (H, W, 3) uint8 RGB, honouring EXIF orientation.

    Grayscale, palette, CMYK, alpha and 16-bit images are converted; errors name the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            return _to_rgb8(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path.name}: cannot decode ({exc})") from exc


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def similarity_from_eyes(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) rotation + scale + translation mapping two source points onto two targets."""
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    if abs(s1 - s0) < 1e-6:
        raise ValueError("the two eye points coincide")
    a = (d1 - d0) / (s1 - s0)
    t = d0 - a * s0
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Applies the affine map, pre-shrinking with area averaging when it downsamples a lot."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:
        f = min(1.0, 2 * scale)
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        matrix = matrix.copy()
        matrix[:, :2] /= f
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def eyes_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(2, 2) image-left and image-right eye centres from FG-NET's 68 or AAF's 49 points."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[1] != 2 or len(landmarks) not in EYE_POINTS:
        raise ValueError(
            f"expected (68, 2) FG-NET or (49, 2) All-Age-Faces landmarks, got {landmarks.shape}"
        )
    left, right = EYE_POINTS[len(landmarks)]
    return np.stack([landmarks[list(left)].mean(0), landmarks[list(right)].mean(0)])


def implausible_eyes(eyes: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """Why landmark eyes cannot be right for an image of this shape, or ``None`` if plausible.

    Catches landmark files that belong to another image or are garbled: eyes outside the image,
    too close or too far apart for a face, or tilted beyond ±60°.
    """
    h, w = shape[:2]
    if not ((eyes >= 0).all() and (eyes[:, 0] < w).all() and (eyes[:, 1] < h).all()):
        return "landmark eyes outside the image"
    dx, dy = eyes[1] - eyes[0]
    dist = float(np.hypot(dx, dy)) / w
    if not EYE_DISTANCE_RANGE[0] <= dist <= EYE_DISTANCE_RANGE[1]:
        return f"landmark eyes {dist:.0%} of the width apart"
    angle = float(np.degrees(np.arctan2(dy, dx)))
    if abs(angle) > MAX_EYE_ANGLE_DEG:
        return f"landmark eyes tilted {angle:.0f} degrees"
    return None


_local = threading.local()  # per-thread detectors: the cache and predict run on thread pools


def _cascade(name: str) -> cv2.CascadeClassifier:
    # One classifier per thread: detectMultiScale on a shared CascadeClassifier from two
    # threads fails inside OpenCV (an assertion in getScaleData).
    cascades = _local.__dict__.setdefault("cascades", {})
    if name not in cascades:
        path = Path(cv2.data.haarcascades) / name
        clf = cv2.CascadeClassifier(str(path))
        if clf.empty():
            raise RuntimeError(
                f"OpenCV Haar cascade {path} is missing; install opencv-python-headless<5 "
                "(the 5.x wheels ship no cascades)"
            )
        cascades[name] = clf
    return cascades[name]


def detect_faces_haar(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Every frontal face Haar finds in an equalised grey image, as (x, y, w, h)."""
    min_side = max(24, min(gray.shape[:2]) // 8)
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    return [tuple(int(v) for v in f) for f in faces]


def detect_face(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face as (x, y, w, h), or ``None``."""
    faces = detect_faces_haar(gray)
    return max(faces, key=lambda f: f[2] * f[3]) if faces else None


def detect_eyes(gray: np.ndarray, face: tuple[int, int, int, int]) -> np.ndarray | None:
    """(2, 2) eye centres inside the upper part of a face box, or ``None`` unless both found."""
    x, y, w, h = face
    roi = gray[y : y + int(0.6 * h), x : x + w]
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        roi, scaleFactor=1.1, minNeighbors=5, minSize=(max(8, w // 10), max(8, w // 10))
    )
    centres = [(x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in eyes]
    left = [c for c in centres if c[0] < x + 0.5 * w]
    right = [c for c in centres if c[0] >= x + 0.5 * w]
    if not left or not right:
        return None
    # The eye nearest the expected height on each side (eyebrows and nostrils also fire).
    expect = y + HAAR_EYE_Y * h
    pick = [min(side, key=lambda c: abs(c[1] - expect)) for side in (left, right)]
    eyes = np.array(pick)
    dist = eyes[1, 0] - eyes[0, 0]
    if not (0.25 * w < dist < 0.65 * w) or abs(eyes[1, 1] - eyes[0, 1]) > 0.25 * w:
        return None
    return eyes


def eyes_from_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array(
        [[x + HAAR_EYE_X[0] * w, y + HAAR_EYE_Y * h], [x + HAAR_EYE_X[1] * w, y + HAAR_EYE_Y * h]]
    )


def mtcnn_available() -> bool:
    """Whether the ``mtcnn`` package (and TensorFlow under it) can be imported."""
    try:
        _mtcnn_class()
    except ImportError:
        return False
    return True


@functools.cache
def _mtcnn_class():
    from mtcnn import MTCNN  # imports TensorFlow: only when a photo without landmarks comes

    return MTCNN


def _mtcnn():
    if getattr(_local, "mtcnn", None) is None:
        _local.mtcnn = _mtcnn_class()(device="CPU:0")
    return _local.mtcnn


def resolve_detector(name: str) -> str:
    """``name``, or ``haar`` with a warning when MTCNN is asked for but cannot be imported."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {list(DETECTORS)}")
    if name == "mtcnn" and not mtcnn_available():
        _warn_no_mtcnn()
        return "haar"
    return name


@functools.cache
def _warn_no_mtcnn() -> None:
    warnings.warn(
        "the mtcnn package (and TensorFlow) is not installed: faces without landmarks are "
        "found with OpenCV's Haar cascades, which miss more faces (pip install mtcnn==1.0.0)",
        stacklevel=3,
    )


def _detect_mtcnn(image: np.ndarray) -> list[Detection]:
    found = []
    for face in _mtcnn().detect_faces(image):
        if face["confidence"] < MTCNN_MIN_CONFIDENCE:
            continue
        kp = face["keypoints"]
        eyes = np.array(sorted([kp["left_eye"], kp["right_eye"]]), dtype=np.float64)
        x, y, w, h = (int(v) for v in face["box"])
        x, y = max(x, 0), max(y, 0)
        if np.linalg.norm(eyes[1] - eyes[0]) < MIN_EYE_DISTANCE_PX:
            continue
        found.append(Detection((x, y, w, h), eyes, float(face["confidence"]), "mtcnn"))
    return found


def _detect_haar(image: np.ndarray, every: bool) -> list[Detection]:
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    boxes = detect_faces_haar(gray) if every else [detect_face(gray)]
    found = []
    for box in boxes:
        if box is None:
            continue
        eyes = detect_eyes(gray, box)
        found.append(Detection(box, eyes, 1.0, "haar_face" if eyes is None else "haar_eyes"))
    return found


def detect(image: np.ndarray, detector: str = "mtcnn", every: bool = False) -> list[Detection]:
    """Faces in an RGB image, largest first: MTCNN's, else Haar's; ``[]`` when none is found.

    Args:
        image: (H, W, 3) uint8 RGB.
        detector: ``mtcnn`` (Haar when MTCNN finds nothing or is not installed) or ``haar``.
        every: all faces rather than only the largest.
    """
    found = []
    if resolve_detector(detector) == "mtcnn":
        found = _detect_mtcnn(image)
    if not found:
        found = _detect_haar(image, every)
    found.sort(key=lambda d: d.area, reverse=True)
    return found if every else found[:1]


def align_detection(image: np.ndarray, spec: AlignSpec, found: Detection) -> AlignedFace:
    """The aligned crop of one detected face (from its eyes, else from its box)."""
    eyes = found.eyes if found.eyes is not None else eyes_from_box(*found.box)
    matrix = similarity_from_eyes(eyes, spec.eye_targets())
    return AlignedFace(warp(image, matrix, spec.size), found.method, matrix, eyes, found.box)


def align_face(
    image: np.ndarray, spec: AlignSpec, landmarks: np.ndarray | None = None
) -> AlignedFace:
    """Aligns one RGB image: plausible landmarks → the detector's largest face → centred crop."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    rejected = ""
    if landmarks is not None:
        eyes = eyes_from_landmarks(landmarks)
        rejected = implausible_eyes(eyes, image.shape) or ""
        if not rejected:
            matrix = similarity_from_eyes(eyes, spec.eye_targets())
            return AlignedFace(warp(image, matrix, spec.size), "landmarks", matrix, eyes)
    found = detect(image, spec.detector)
    face = align_detection(image, spec, found[0]) if found else align_center(image, spec)
    face.rejected = rejected
    return face


def align_center(image: np.ndarray, spec: AlignSpec) -> AlignedFace:
    """The centred square crop, treated as a tight face box (the last fallback)."""
    h, w = image.shape[:2]
    side = min(h, w)
    eyes = eyes_from_box((w - side) / 2, (h - side) / 2, side, side)
    matrix = similarity_from_eyes(eyes, spec.eye_targets())
    return AlignedFace(warp(image, matrix, spec.size), "center", matrix, eyes)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a (2, 3) affine map to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
