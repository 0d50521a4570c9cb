"""What every face detector returns, and the eye positions a bare face box implies."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

# Where the eyes sit relative to an OpenCV frontal-face box (fractions of its width / height),
# and the face box a centred fallback assumes. Measured on FG-NET against its landmarks
# (benchmarks/eye_geometry.py).
HAAR_EYE_X = (0.30, 0.70)
HAAR_EYE_Y = 0.39

# Per-thread detector objects: the cache and predict run detectors on thread pools, and neither
# OpenCV's cascades and dnn nets nor dlib's predictors may be shared between threads.
per_thread = threading.local()


@dataclass
class Detection:
    """One face found in a photo: its box, its two eye centres when known, and how."""

    box: tuple[int, int, int, int]  # x, y, w, h in source pixels
    eyes: np.ndarray | None = field(default=None, repr=False)  # (2, 2) image-left, image-right
    score: float = 1.0
    method: str = "haar_face"  # the METHODS entry of how the eyes were found

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


def eyes_from_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    """(2, 2) eye positions a frontal face box implies, when no detector found the eyes."""
    return np.array(
        [
            [x + HAAR_EYE_X[0] * w, y + HAAR_EYE_Y * h],
            [x + HAAR_EYE_X[1] * w, y + HAAR_EYE_Y * h],
        ]
    )


def clip_box(x0: float, y0: float, x1: float, y1: float, shape) -> tuple[int, int, int, int]:
    """A corner box as integer (x, y, w, h) inside an image of this shape."""
    h, w = shape[:2]
    left, top = max(0, int(round(x0))), max(0, int(round(y0)))
    right, bottom = min(w, int(round(x1))), min(h, int(round(y1)))
    return left, top, max(0, right - left), max(0, bottom - top)
