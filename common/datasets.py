"""Readers that turn a face data set on disk into records (path, person, age, landmarks).

Supported: FG-NET (with its 68-point landmarks), UTKFace, All-Age-Faces and a generic CSV.
Names that do not parse are reported with the file name and skipped, never guessed.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

FGNET_URL = "http://yanweifu.github.io/FG_NET_data/FGNET.zip"
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

    @property
    def name(self) -> str:
        return self.path.name


def default_cache_dir() -> Path:
    """``$AGEZOO_CACHE``, else ``$XDG_CACHE_HOME/agezoo``, else ``~/.cache/agezoo``."""
    if os.environ.get("AGEZOO_CACHE"):
        return Path(os.environ["AGEZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agezoo"


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- FG-NET

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
    for path in _image_files(images_dir):
        m = FGNET_NAME.match(path.name)
        if not m:
            _warn(f"FG-NET image {path.name}: name is not PPPAaa[x].JPG; skipped")
            continue
        marks = None
        if landmarks:
            pts = points.get(path.stem.lower())
            if pts is None:
                _warn(f"FG-NET image {path.name}: no points/{path.stem.lower()}.pts; no landmarks")
            else:
                try:
                    marks = read_pts(pts)
                    if marks.shape != (68, 2):
                        raise ValueError(f"{pts.name}: expected 68 points, got {len(marks)}")
                except (ValueError, OSError) as exc:
                    _warn(f"FG-NET image {path.name}: {exc}; no landmarks")
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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_fgnet(root: str | Path) -> VerifyReport:
    """Checks every image in ``root/images`` against the shipped manifest.

    Names are compared case-insensitively (copies differ in the extension's case).
    """
    expected = {name.lower(): (name, digest) for name, digest in fgnet_manifest().items()}
    present = {p.name.lower(): p for p in _image_files(Path(root) / "images")}
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


# --------------------------------------------------------------------------- UTKFace

UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{17})\.jpg(\.chip\.jpg)?$", re.IGNORECASE)


def load_utkface(root: str | Path) -> list[Record]:
    """Reads UTKFace (``age_gender_race_date.jpg[.chip.jpg]``).

    UTKFace has no identity labels, so each image is its own "person": splits are then
    image-disjoint, not identity-disjoint.
    """
    records = []
    for path in _image_files(Path(root)):
        m = UTK_NAME.match(path.name)
        if not m:
            _warn(f"UTKFace image {path.name}: name is not age_gender_race_date.jpg; skipped")
            continue
        records.append(Record(path, path.name.split(".")[0], float(int(m.group(1)))))
    return records


# --------------------------------------------------------------------------- All-Age-Faces

AAF_NAME = re.compile(r"^(\d{5})A(\d{2})\.jpg$", re.IGNORECASE)
AAF_IMAGE_DIRS = ("aglined faces", "aligned faces", "original images", "images")
AAF_POINTS_DIR = "key points"
AAF_POINTS = 49


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
    for path in _image_files(folder):
        m = AAF_NAME.match(path.name)
        if not m:
            _warn(f"All-Age-Faces image {path.name}: name is not %05dA%02d.jpg; skipped")
            continue
        marks = None
        if landmarks and points_dir.is_dir():
            pts = points_dir / f"{path.stem}.txt"
            try:
                marks = read_aaf_points(pts)
            except (OSError, ValueError) as exc:
                _warn(f"All-Age-Faces image {path.name}: {exc}; aligned without landmarks")
        records.append(Record(path, path.stem, float(int(m.group(2))), marks))
    if dedupe:
        official = None
        if (root / "image sets").is_dir():
            split = aaf_split(root)
            official = {name: part for part, names in split.items() for name in names}
        records, report = find_duplicates(records, official)
        if report.groups:
            _warn(f"All-Age-Faces: {report}")
    return records


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
                _warn(f"{path.name} line {lineno}: {token!r} is not an image name; skipped")
                continue
            names.append(Path(token).stem)
        out[part] = names
    return out


# --------------------------------------------------------------------------- CSV


def load_csv(csv_path: str | Path) -> list[Record]:
    """Reads a CSV with a header ``path,age[,person]``; paths are relative to the CSV's folder.

    Without a ``person`` column each image is its own person.
    """
    csv_path = Path(csv_path)
    records = []
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "age"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: header must have columns path,age[,person]")
        for lineno, row in enumerate(reader, 2):
            where = f"{csv_path.name} line {lineno}"
            try:
                age = float(row["age"])
            except (TypeError, ValueError):
                _warn(f"{where}: age {row['age']!r} is not a number; skipped")
                continue
            if not (0 <= age < 150) or not row.get("path"):
                _warn(f"{where}: missing path or age {age} out of range; skipped")
                continue
            path = Path(row["path"])
            path = path if path.is_absolute() else csv_path.parent / path
            person = (row.get("person") or "").strip() or path.name
            records.append(Record(path, person, age))
    return records


def records_summary(records: list[Record]) -> str:
    ages = np.array([r.age for r in records])
    people = {r.person for r in records}
    return (
        f"{len(records)} images, {len(people)} people, ages {ages.min():g}-{ages.max():g}"
        if records
        else "0 images"
    )
