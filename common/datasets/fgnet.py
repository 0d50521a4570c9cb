"""FG-NET (Lanitis, Taylor & Cootes): 1002 images of 82 people with 68 hand-placed landmarks.

Found through ``AGEZOO_FGNET_DIR``, a local ``FGNET_ZIP``, the cache, or a download of the copy
in common use; checked against the sha256 manifest shipped in ``common/data``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from common.datasets.base import (
    DatasetNotFoundError,
    Record,
    default_cache_dir,
    download_file,
    image_files,
    sha256_file,
    warn,
)

FGNET_URL = "http://yanweifu.github.io/FG_NET_data/FGNET.zip"

FGNET_NAME = re.compile(r"^(\d{3})[Aa](\d{2})([ab]?)\.(jpe?g)$", re.IGNORECASE)


def read_pts(path: str | Path) -> np.ndarray:
    """Reads an ASM-style ``.pts`` landmark file into an (n_points, 2) float array."""
    path = Path(path)
    text = path.read_text(errors="replace")
    match = re.search(r"n_points:\s*(\d+)", text)
    body = re.search(r"\{(.*)\}", text, re.DOTALL)
    if not match or not body:
        raise ValueError(f"{path.name}: not a .pts file (no n_points header or {{ }} block)")
    values = np.array(body.group(1).split(), dtype=np.float64)
    n = int(match.group(1))
    if values.size != 2 * n:
        raise ValueError(f"{path.name}: header says {n} points, found {values.size / 2:g}")
    return values.reshape(n, 2)


def load_fgnet(root: str | Path, landmarks: bool = True) -> list[Record]:
    """Reads FG-NET from ``root/images`` (``PPPAaa[x].JPG``) and ``root/points`` (``.pts``).

    Points files are matched to images on the lower-cased stem. An image whose points file is
    missing or unreadable gets ``landmarks=None`` (and is aligned by face detection instead).
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DatasetNotFoundError(f"FG-NET: no images/ folder in {root}")
    points = {}
    if landmarks and (root / "points").is_dir():
        points = {
            p.stem.lower(): p for p in (root / "points").iterdir() if p.suffix.lower() == ".pts"
        }
    records = []
    for path in image_files(images_dir):
        m = FGNET_NAME.match(path.name)
        if not m:
            warn(f"FG-NET image {path.name}: name is not PPPAaa[x].JPG; skipped")
            continue
        marks = None
        if landmarks:
            pts = points.get(path.stem.lower())
            if pts is None:
                warn(f"FG-NET image {path.name}: no points/{path.stem.lower()}.pts; no landmarks")
            else:
                try:
                    marks = read_pts(pts)
                    if marks.shape != (68, 2):
                        raise ValueError(f"{pts.name}: expected 68 points, got {len(marks)}")
                except (ValueError, OSError) as exc:
                    warn(f"FG-NET image {path.name}: {exc}; no landmarks")
                    marks = None
        records.append(Record(path, m.group(1), float(int(m.group(2))), marks))
    return records


def fgnet_manifest() -> dict[str, str]:
    """The shipped manifest of FG-NET: ``{file name: sha256}`` for its 1002 images."""
    text = resources.files("common").joinpath("data/fgnet_manifest.csv").read_text()
    return {row["file"]: row["sha256"] for row in csv.DictReader(text.splitlines())}


@dataclass(frozen=True)
class VerifyReport:
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    mismatched: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def __str__(self) -> str:
        if self.ok:
            return "all images match the manifest"
        parts = []
        for label, names in (
            ("missing", self.missing),
            ("extra", self.extra),
            ("sha256 mismatch", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                parts.append(f"{len(names)} {label}: {shown}")
        return "; ".join(parts)


def verify_fgnet(root: str | Path) -> VerifyReport:
    """Checks every image in ``root/images`` against the shipped manifest.

    Names are compared case-insensitively (copies differ in the extension's case).
    """
    expected = {name.lower(): (name, digest) for name, digest in fgnet_manifest().items()}
    present = {p.name.lower(): p for p in image_files(Path(root) / "images")}
    missing = sorted(expected[k][0] for k in set(expected) - set(present))
    extra = sorted(present[k].name for k in set(present) - set(expected))
    mismatched = sorted(
        present[k].name
        for k in set(expected) & set(present)
        if sha256_file(present[k]) != expected[k][1]
    )
    return VerifyReport(tuple(missing), tuple(extra), tuple(mismatched))


def _is_fgnet_root(path: Path) -> bool:
    return (path / "images").is_dir()


def _find_fgnet_root(folder: Path) -> Path | None:
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if _is_fgnet_root(candidate):
            return candidate
    return None


def safe_extract_zip(zip_path: str | Path, dest: str | Path) -> None:
    """Extracts a zip, refusing absolute paths, ``..`` components and symbolic links."""
    dest = Path(dest)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = Path(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                raise ValueError(f"{zip_path}: refusing absolute path {name!r}")
            if ".." in parts:
                raise ValueError(f"{zip_path}: refusing path with '..': {name!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValueError(f"{zip_path}: refusing symbolic link {name!r}")
        zf.extractall(dest)


def _extract_fgnet(zip_path: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fgnet-extract-"))
    try:
        safe_extract_zip(zip_path, tmp)
        found = _find_fgnet_root(tmp)
        if found is None:
            raise DatasetNotFoundError(f"{zip_path}: no images/ folder inside the zip")
        if target.exists():
            shutil.rmtree(target)
        os.replace(found, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fgnet_root(cache_dir: str | Path | None = None, download: bool = True) -> Path:
    """Finds FG-NET: ``$AGEZOO_FGNET_DIR``, else ``$FGNET_ZIP``, else the cache, else download.

    Raises:
        DatasetNotFoundError: with the ways to provide the data when none works.
    """
    if os.environ.get("AGEZOO_FGNET_DIR"):
        root = Path(os.environ["AGEZOO_FGNET_DIR"]).expanduser()
        if not _is_fgnet_root(root):
            raise DatasetNotFoundError(
                f"AGEZOO_FGNET_DIR={root} has no images/ folder; point it at the folder that "
                "holds FG-NET's images/ and points/"
            )
        return root
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "fgnet"
    if os.environ.get("FGNET_ZIP"):
        zip_path = Path(os.environ["FGNET_ZIP"]).expanduser()
        if not zip_path.is_file():
            raise DatasetNotFoundError(f"FGNET_ZIP={zip_path} is not a file")
        if not _is_fgnet_root(target):
            _extract_fgnet(zip_path, target)
        return target
    if _is_fgnet_root(target):
        return target
    if not download:
        raise DatasetNotFoundError(_fgnet_help(f"FG-NET is not in the cache ({target})"))
    zip_path = cache / "FGNET.zip"
    try:
        download_file(FGNET_URL, zip_path)
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetNotFoundError(_fgnet_help(f"downloading {FGNET_URL} failed ({exc})")) from exc
    return _extract_fgnet(zip_path, target)


def _fgnet_help(reason: str) -> str:
    return (
        f"{reason}. Provide FG-NET one of two other ways:\n"
        "  1. a local copy: export AGEZOO_FGNET_DIR=/path/to/FGNET  (the folder with images/ "
        "and points/)\n"
        "  2. a local zip:  export FGNET_ZIP=/path/to/FGNET.zip  (extracted into the cache)\n"
        "FG-NET is for research use only; see the README for its terms and citation."
    )
