"""What ``agezoo predict`` and the Python API accept, turned into still images to look at.

Photos (paths), images already in memory (RGB uint8 arrays, PIL images) and video files (every
``N``-th frame, read with OpenCV). Folders are searched for photos and videos; an entry that
cannot be read (a dangling symlink, a file without read permission) is named like any other
failure, never skipped in silence.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.faces import load_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass
class Failure:
    file: str
    reason: str


@dataclass
class Still:
    """One still image to detect faces in: a photo, an image in memory or a video frame."""

    file: str  # the path, or "<array N>" for an image passed in memory
    load: Callable[[], np.ndarray]  # (H, W, 3) uint8 RGB; raises ValueError naming the problem
    frame: int | None = None  # video frame index
    time: float | None = None  # video time in seconds

    @property
    def where(self) -> str:
        """How a failure names it: the file, and the frame of a video."""
        return self.file if self.frame is None else f"{self.file} frame {self.frame}"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _unreadable(path: Path) -> str | None:
    """Why a folder entry cannot be read, or ``None``."""
    if path.is_symlink() and not path.exists():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"symbolic link loop (through {os.readlink(path)})"
        return f"dangling symbolic link (to {os.readlink(path)})"
    if path.is_file() and not os.access(path, os.R_OK):
        return "permission denied"
    return None


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Photos and videos named directly (always tried) and those inside named folders; entries
    of those folders that cannot be read come back as failures."""
    paths, failures = [], []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if (
                    p.name.startswith(".")
                    or p.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES
                ):
                    continue
                reason = _unreadable(p)
                if reason:
                    failures.append(Failure(str(p), reason))
                elif p.is_file():
                    paths.append(p)
        elif item.is_file():
            paths.append(item)
        else:
            failures.append(Failure(str(item), _unreadable(item) or "no such file or folder"))
    return paths, failures


def _as_rgb(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}"
        )
    return np.ascontiguousarray(array[..., :3])


def video_frames(path: Path, every: int = 1) -> Iterator[Still | Failure]:
    """Every ``every``-th frame of a video, decoded as it is read (frames come in order)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        yield Failure(str(path), "cannot open the video (unknown format or codec)")
        return
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    index = 0
    try:
        while True:
            ok = capture.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if ok:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    seconds = index / fps if fps > 0 else None
                    yield Still(str(path), lambda rgb=rgb: rgb, index, seconds)
            index += 1
    finally:
        capture.release()
    if index == 0:
        yield Failure(str(path), "the video holds no readable frame")


def stills(items: Iterable, video_every: int = 1) -> Iterator[Still | Failure]:
    """The still images of paths, arrays, PIL images and videos, in order."""
    if video_every < 1:
        raise ValueError(f"every must be at least 1, got {video_every}")
    for n, item in enumerate(items):
        if isinstance(item, (str, Path)):
            path = Path(item)
            if is_video(path):
                yield from video_frames(path, video_every)
            else:
                yield Still(str(path), lambda path=path: load_rgb(path))
        elif isinstance(item, np.ndarray):
            yield Still(f"<array {n}>", lambda item=item, n=n: _as_rgb(item, f"<array {n}>"))
        elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
            yield Still(f"<array {n}>", lambda item=item: np.asarray(item.convert("RGB")))
        else:
            yield Failure(f"<input {n}>", f"not a path, an RGB array or a PIL image: {type(item)}")
