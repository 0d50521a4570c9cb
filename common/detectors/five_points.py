"""dlib's 5-point shape predictor, walked by our own C (``five_points.c``) without the GIL.

dlib's Python binding holds the GIL for its whole call (0.2–0.6 ms a face), so the second
worker of ``agezoo predict`` queues behind it and every short Python step of the other stages
waits too (``benchmarks/RESULTS.md``, predict stages). ``five_points.c`` walks the model's 15
cascades of 500 trees (``shape_predictor_5_face_landmarks.dat`` of ``face-recognition-models``,
CC0) with the same arithmetic as dlib and is called through ctypes, which releases the GIL. The
points are dlib's, to the pixel: ``common.detectors.five_points_build`` (run by ``make setup``)
compiles it into the cache, with the model's arrays read from dlib's serialisation, and keeps the
build only when it matches dlib on generated faces; a test compares the two on FG-NET photos.
Until it is built, or without a C compiler, dlib's own predictor runs, with the same points.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from common.datasets.base import default_cache_dir

SOURCE = Path(__file__).with_name("five_points.c")
MAX_LANDMARKS = 64  # the C keeps the mean shape on the stack


@dataclass(frozen=True)
class ShapeModel:
    """The arrays of a dlib shape predictor: C cascades of T trees with S splits each."""

    initial: np.ndarray  # (L, 2) float32 mean shape in the unit box
    anchors: np.ndarray  # (C, P) int32 landmark each sampled pixel hangs from
    deltas: np.ndarray  # (C, P, 2) float32 offsets from it, in the mean shape's frame
    idx1: np.ndarray  # (C, T, S) int32 sampled pixels compared at each split
    idx2: np.ndarray  # (C, T, S) int32
    thresh: np.ndarray  # (C, T, S) float32
    leaves: np.ndarray  # (C, T, S + 1, 2 L) float32 shape increments

    @property
    def depth(self) -> int:
        return int(math.log2(self.idx1.shape[2] + 1))


class _CModel(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_int32) for name in ("landmarks", "cascades", "pixels")),
        *((name, ctypes.c_int32) for name in ("trees", "splits", "depth")),
        *((name, ctypes.c_void_p) for name in ("initial", "anchors", "deltas", "idx1", "idx2")),
        *((name, ctypes.c_void_p) for name in ("thresh", "leaves")),
    ]


def _hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:12]


def built_files(dat: Path) -> tuple[Path, Path]:
    """Where the compiled walker and the parsed arrays of this model file live in the cache."""
    key = _hash(SOURCE.read_bytes(), dat.read_bytes(), sys.platform.encode())
    folder = default_cache_dir() / "detectors"
    return folder / f"five-points-{key}.so", folder / f"five-points-{key}.npz"


class FivePoints:
    """The compiled walker over one model's arrays; thread-safe (each call has its own
    scratch); ``__call__`` releases the GIL while it walks the trees."""

    def __init__(self, library: Path, arrays: Path):
        with np.load(arrays) as saved:
            self._arrays = ShapeModel(**{f.name: saved[f.name] for f in fields(ShapeModel)})
        m = self._arrays
        self._lib = ctypes.CDLL(str(library))
        self._walk = self._lib.five_points
        self._walk.restype = None
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self._walk.argtypes = [ctypes.POINTER(_CModel), pointer, size, *[pointer] * 5]
        c, p = m.anchors.shape
        _, t, s = m.idx1.shape
        self._model = _CModel(
            len(m.initial), c, p, t, s, m.depth,
            *(a.ctypes.data for a in (m.initial, m.anchors, m.deltas, m.idx1, m.idx2)),
            m.thresh.ctypes.data, m.leaves.ctypes.data,
        )  # fmt: skip
        self.landmarks = len(m.initial)

    def __call__(self, image: np.ndarray, rect, window) -> np.ndarray:
        """(L, 2) int64 points of the face in ``rect`` (left, top, right, bottom, in the
        window's coordinates), as dlib's predictor gives them on ``image`` cut to ``window``
        (left, top, right, bottom in the image); in the window's coordinates."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        image = np.ascontiguousarray(image)
        left, top, right, bottom = (int(v) for v in window)
        if not (0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]):
            raise ValueError(f"window {tuple(window)} is not inside the {image.shape} image")
        frame = np.array([left, top, right - left, bottom - top], np.int64)
        box = np.asarray(rect, np.float64)
        features = np.empty(self._arrays.anchors.shape[1], np.float32)
        shape = np.empty(2 * self.landmarks, np.float32)
        points = np.empty((self.landmarks, 2), np.int64)
        self._walk(
            ctypes.byref(self._model), image.ctypes.data, image.shape[1],
            frame.ctypes.data, box.ctypes.data, features.ctypes.data, shape.ctypes.data,
            points.ctypes.data,
        )  # fmt: skip
        return points


@functools.cache
def five_points_walker(dat: Path) -> FivePoints | None:
    """The compiled walker of this model file, or ``None`` until ``make setup`` built it."""
    library, arrays = built_files(dat)
    if not (library.is_file() and arrays.is_file()):
        return None
    try:
        return FivePoints(library, arrays)
    except (OSError, ValueError, KeyError):  # a damaged build: dlib takes over
        return None
