"""OpenCV's Haar cascades: frontal faces, then the two eyes inside the upper part of each box.

The cascades ship inside the ``opencv-python-headless`` wheel below 5.0 (the 5.x wheels ship
none). On FG-NET they find fewer faces and place the eyes less well than the other detectors
(``benchmarks/RESULTS.md``), but need nothing else.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.detectors.base import HAAR_EYE_Y, Detection, per_thread


def _cascade(name: str) -> cv2.CascadeClassifier:
    # One classifier per thread: detectMultiScale on a shared CascadeClassifier from two
    # threads fails inside OpenCV (an assertion in getScaleData).
    cascades = per_thread.__dict__.setdefault("cascades", {})
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


def detect_haar(image: np.ndarray, every: bool = True) -> list[Detection]:
    """Frontal faces with their Haar eyes (``haar_eyes``), or the bare box (``haar_face``)."""
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    boxes = detect_faces_haar(gray) if every else [detect_face(gray)]
    found = []
    for box in boxes:
        if box is None:
            continue
        eyes = detect_eyes(gray, box)
        found.append(Detection(box, eyes, 1.0, "haar_face" if eyes is None else "haar_eyes"))
    return found
