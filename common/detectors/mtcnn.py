"""MTCNN (Zhang et al., 2016) from the ``mtcnn`` package, which ships its weights and runs on
TensorFlow: faces with five points, of which the two eyes align the face."""

from __future__ import annotations

import functools

import numpy as np

from common.detectors.base import Detection, per_thread

# MTCNN detections below this confidence, or with eyes closer than this many pixels, are not
# trusted (the Haar path gets its turn).
MTCNN_MIN_CONFIDENCE = 0.9
MIN_EYE_DISTANCE_PX = 4.0


def mtcnn_available() -> bool:
    """Whether the ``mtcnn`` package (and TensorFlow under it) can be imported."""
    try:
        _mtcnn_class()
    except ImportError:
        return False
    return True


@functools.cache
def _mtcnn_class():
    from mtcnn import (
        MTCNN,
    )  # imports TensorFlow: only when a photo without landmarks comes

    return MTCNN


def _mtcnn():
    if getattr(per_thread, "mtcnn", None) is None:
        per_thread.mtcnn = _mtcnn_class()(device="CPU:0")
    return per_thread.mtcnn


def detect_mtcnn(image: np.ndarray, every: bool = True) -> list[Detection]:
    """MTCNN's faces with its two eye points, above its confidence and eye-distance floors."""
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
