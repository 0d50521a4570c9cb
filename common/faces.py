"""Face loading and alignment, the same for training and for predict.

Eyes come from a data set's landmarks when it has them, else from a face detector of the table
in ``common.detectors`` (BlazeFace with dlib's 5-point eyes by default; MTCNN; OpenCV's Haar
cascades, whose bare face box is the last resort). Every face comes out as a square uint8 RGB
crop with the eyes at fixed positions. When no face is found the image is centre-cropped and the
fallback is counted, never raised (predict reports it instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from common.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    METHODS,
    Detection,
    detect,
    eyes_from_box,
    resolve_detector,
)

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


@dataclass(frozen=True)
class AlignSpec:
    """Output geometry: a ``size`` × ``size`` crop, eyes on a horizontal line.

    A tight face puts the eyes 36 % of the width apart, 42 % from the top; ``margin`` adds that
    fraction of context on every side (0.2 → the crop covers 1.2× the tight face).
    """

    size: int = 224
    margin: float = 0.2
    detector: str = DEFAULT_DETECTOR  # for images without landmarks: a DETECTORS name

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
    method: str  # one of METHODS (common.detectors)
    matrix: np.ndarray  # (2, 3) affine map from source pixels to output pixels
    eyes: np.ndarray  # (2, 2) source eye positions that were used
    box: tuple[int, int, int, int] | None = None  # detected face (x, y, w, h), if any
    rejected: str = ""  # why the landmarks were not used, when they were given but implausible


# An image smaller than this a side holds no face worth ageing, and a detector run on it can
# answer with a face where none is (an 8 px grey square, bordered for the tight-crop retry).
MIN_SIDE = 16


def too_small(image: np.ndarray) -> str:
    """The reason an image below :data:`MIN_SIDE` is not aged nor trained on."""
    h, w = image.shape[:2]
    return f"too small to hold a face ({w}×{h} px; at least {MIN_SIDE} px a side)"


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


__all__ = [
    "DETECTORS",
    "METHODS",
    "AlignSpec",
    "AlignedFace",
    "Detection",
    "align_center",
    "align_detection",
    "align_face",
    "detect",
    "eyes_from_landmarks",
    "implausible_eyes",
    "load_rgb",
    "resolve_detector",
    "similarity_from_eyes",
    "transform_points",
    "warp",
]
