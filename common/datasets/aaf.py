"""All-Age-Faces (Cheng et al., 2019): 13,322 aligned faces, mostly Asian, ages 2–80, with 49
landmarks and an official train / val list. Found through ``AGEZOO_AAF_DIR``; never downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from common.datasets.base import (
    DatasetNotFoundError,
    Record,
    find_duplicates,
    image_files,
    warn,
)

AAF_NAME = re.compile(r"^(\d{5})A(\d{2})\.jpg$", re.IGNORECASE)
AAF_IMAGE_DIRS = ("aglined faces", "aligned faces", "original images", "images")
AAF_POINTS_DIR = "key points"
AAF_POINTS = 49


def aaf_root(root: str | Path | None = None) -> Path:
    """All-Age-Faces' folder: ``root``, else ``$AGEZOO_AAF_DIR``; it is never downloaded."""
    root = root or os.environ.get("AGEZOO_AAF_DIR")
    if not root:
        raise DatasetNotFoundError(
            "All-Age-Faces: set AGEZOO_AAF_DIR (or data.root) to the folder of its download "
            "('aglined faces/', 'key points/', 'image sets/'); get it from "
            "https://github.com/JingchunCheng/All-Age-Faces-Dataset"
        )
    if not Path(root).is_dir():
        raise DatasetNotFoundError(f"All-Age-Faces: {root} is not a folder")
    return Path(root)


def read_aaf_points(path: str | Path) -> np.ndarray:
    """An All-Age-Faces ``key points`` file: 49 lines ``x y`` → (49, 2)."""
    path = Path(path)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path.name}: not numbers ({exc})") from exc
    if values.size != 2 * AAF_POINTS:
        raise ValueError(f"{path.name}: expected {AAF_POINTS} points, found {values.size / 2:g}")
    return values.reshape(AAF_POINTS, 2)


def load_aaf(
    root: str | Path,
    images_dir: str | None = None,
    landmarks: bool = True,
    dedupe: bool = True,
) -> list[Record]:
    """Reads All-Age-Faces in the layout of its download.

    ``root/aglined faces/%05dA%02d.jpg`` (the download's spelling), ``root/key points/*.txt``
    (49 landmarks each) and ``root/image sets/{train,val}.txt``. Every image is its own person,
    except byte-identical files: with ``dedupe`` (the default) a group of identical files keeps
    one copy when the copies agree on the age, and is dropped when they do not (see
    :func:`find_duplicates`). An image whose points file is missing or unreadable gets
    ``landmarks=None`` and is aligned by face detection; implausible landmark eyes are caught
    at alignment time (``common.faces.implausible_eyes``) and counted in the cache entry.
    """
    root = Path(root)
    folder = (
        root / images_dir
        if images_dir
        else next((root / d for d in AAF_IMAGE_DIRS if (root / d).is_dir()), None)
    )
    if folder is None or not folder.is_dir():
        raise DatasetNotFoundError(
            f"All-Age-Faces: no image folder ({' / '.join(AAF_IMAGE_DIRS)}) in {root}"
        )
    points_dir = root / AAF_POINTS_DIR
    records = []
    for path in image_files(folder):
        m = AAF_NAME.match(path.name)
        if not m:
            warn(f"All-Age-Faces image {path.name}: name is not %05dA%02d.jpg; skipped")
            continue
        marks = None
        if landmarks and points_dir.is_dir():
            pts = points_dir / f"{path.stem}.txt"
            try:
                marks = read_aaf_points(pts)
            except (OSError, ValueError) as exc:
                warn(f"All-Age-Faces image {path.name}: {exc}; aligned without landmarks")
        records.append(Record(path, path.stem, float(int(m.group(2))), marks))
    if dedupe:
        official = None
        if (root / "image sets").is_dir():
            split = aaf_split(root)
            official = {name: part for part, names in split.items() for name in names}
        records, report = find_duplicates(records, official)
        if report.groups:
            warn(f"All-Age-Faces: {report}")
    return records


def aaf_split(root: str | Path) -> dict[str, list[str]]:
    """All-Age-Faces' own split: ``{"train": [...], "val": [...]}`` of person ids (stems)."""
    out = {}
    for part in ("train", "val"):
        path = Path(root) / "image sets" / f"{part}.txt"
        if not path.is_file():
            raise DatasetNotFoundError(f"All-Age-Faces: {path} not found")
        names = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            token = line.split()[0]
            if not AAF_NAME.match(token):
                warn(f"{path.name} line {lineno}: {token!r} is not an image name; skipped")
                continue
            names.append(Path(token).stem)
        out[part] = names
    return out
