"""What every data-set reader shares: the record, its warnings and errors, files and hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class DataWarning(UserWarning):
    """A file of a data set was skipped or could not be used fully."""


class DatasetNotFoundError(FileNotFoundError):
    """A data set could not be found locally nor downloaded."""


@dataclass(frozen=True)
class Record:
    """One image: its path, person id, age in years and its landmarks or ``None``.

    Landmarks are FG-NET's (68, 2) or All-Age-Faces' (49, 2) points, in source pixels.
    """

    path: Path
    person: str
    age: float
    landmarks: np.ndarray | None = None
    age_std: float | None = None  # the spread of the label where the data set gives one (APPA)

    @property
    def name(self) -> str:
        return self.path.name


def default_cache_dir() -> Path:
    """``$AGEZOO_CACHE``, else ``$XDG_CACHE_HOME/agezoo``, else ``~/.cache/agezoo``."""
    if os.environ.get("AGEZOO_CACHE"):
        return Path(os.environ["AGEZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agezoo"


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Downloads ``url`` to ``dest`` atomically, with a progress bar."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                while block := resp.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


@dataclass
class DuplicateReport:
    """Byte-identical files of a data set, and what was done with them."""

    groups: int = 0  # sets of two or more identical files
    files: int = 0  # files in those groups
    conflicting_groups: int = 0  # groups whose copies carry different ages (all dropped)
    max_age_gap: float = 0.0
    dropped_files: int = 0  # files removed: whole conflicting groups + extra copies
    straddling_groups: int = 0  # groups with copies on both sides of the official split

    def __str__(self) -> str:
        return (
            f"{self.groups} groups of byte-identical files ({self.files} files); "
            f"{self.conflicting_groups} disagree on the age (up to {self.max_age_gap:g} years) "
            f"and are dropped; {self.straddling_groups} straddle the official split; "
            f"{self.dropped_files} files removed, one copy kept of the others"
        )


def find_duplicates(
    records: list[Record], official: dict[str, str] | None = None
) -> tuple[list[Record], DuplicateReport]:
    """Groups byte-identical files; keeps one copy of agreeing groups, drops conflicting ones.

    Args:
        records: the data set's records (each its own person).
        official: person → official part (``train`` / ``val``), to count straddling groups.
    """
    by_hash: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        by_hash.setdefault(sha256_file(rec.path), []).append(i)
    drop: set[int] = set()
    report = DuplicateReport()
    for members in by_hash.values():
        if len(members) < 2:
            continue
        report.groups += 1
        report.files += len(members)
        ages = {records[i].age for i in members}
        gap = max(ages) - min(ages)
        report.max_age_gap = max(report.max_age_gap, gap)
        if official and len({official.get(records[i].person) for i in members}) > 1:
            report.straddling_groups += 1
        if gap > 0:
            report.conflicting_groups += 1
            drop.update(members)
        else:
            drop.update(members[1:])
    report.dropped_files = len(drop)
    return [r for i, r in enumerate(records) if i not in drop], report


def records_summary(records: list[Record]) -> str:
    ages = np.array([r.age for r in records])
    people = {r.person for r in records}
    return (
        f"{len(records)} images, {len(people)} people, ages {ages.min():g}-{ages.max():g}"
        if records
        else "0 images"
    )
