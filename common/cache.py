"""Preprocess a data set once into uint8 arrays, cached on disk under a content hash.

The key covers every source file's bytes, the labels, the landmarks and every preprocessing
parameter, so any change rebuilds and nothing stale is reused. A cache entry is a folder
written under a temporary name and renamed into place, so a killed build leaves no half entry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.datasets import DataWarning, Record, default_cache_dir
from common.faces import (
    MIN_SIDE,
    AlignSpec,
    align_face,
    eyes_from_landmarks,
    load_rgb,
    resolve_detector,
    too_small,
    transform_points,
)
from common.results import CorruptFileError, read_checked_json, write_checked_json

# Bump when the alignment code changes in a way that alters the pixels.
PREPROCESS_VERSION = 4  # 4: the 5-point window's bottom from the face's centre row


@dataclass
class FaceArrays:
    """Aligned faces of one data set: ``images`` is (N, S, S, 3) uint8 RGB."""

    images: np.ndarray
    ages: np.ndarray  # (N,) float32 years
    persons: np.ndarray  # (N,) str
    names: np.ndarray  # (N,) str file names
    methods: np.ndarray  # (N,) str alignment method per image
    key: str = ""  # preprocessing hash, recorded by every result
    meta: dict = field(default_factory=dict)
    # (N,) float32: the label's spread where the data set gives one (APPA's vote std), else NaN
    age_stds: np.ndarray | None = None

    def __post_init__(self):
        if self.age_stds is None:
            self.age_stds = np.full(len(self.ages), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> FaceArrays:
        return FaceArrays(
            self.images[index],
            self.ages[index],
            self.persons[index],
            self.names[index],
            self.methods[index],
            self.key,
            self.meta,
            self.age_stds[index],
        )


def concat_faces(parts: dict[str, FaceArrays]) -> FaceArrays:
    """Several data sets as one; person ids and names are prefixed with the set's name."""
    if len({p.images.shape[1:] for p in parts.values()}) != 1:
        raise ValueError("data sets to combine must share the crop size")
    key = hashlib.sha256("+".join(f"{t}:{p.key}" for t, p in parts.items()).encode()).hexdigest()
    return FaceArrays(
        images=np.concatenate([p.images for p in parts.values()]),
        ages=np.concatenate([p.ages for p in parts.values()]),
        persons=np.concatenate([np.char.add(f"{t}:", p.persons) for t, p in parts.items()]),
        names=np.concatenate([np.char.add(f"{t}/", p.names) for t, p in parts.items()]),
        methods=np.concatenate([p.methods for p in parts.values()]),
        key=key,
        meta={t: {"count": len(p), "key": p.key} for t, p in parts.items()},
        age_stds=np.concatenate([p.age_stds for p in parts.values()]),
    )


def cache_key(records: list[Record], spec: AlignSpec, tag: str) -> str:
    """sha256 over the source bytes, labels, landmarks and preprocessing parameters."""
    h = hashlib.sha256()
    params = {
        "version": PREPROCESS_VERSION,
        "tag": tag,
        "spec": asdict(spec),
        "opencv": cv2.__version__,
    }
    h.update(json.dumps(params, sort_keys=True).encode())
    for rec in records:
        h.update(f"\0{rec.path.name}\0{rec.person}\0{rec.age!r}\0".encode(errors="surrogateescape"))
        try:
            with open(rec.path, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        except OSError as exc:  # skipped by the build, named there; readable later = a new key
            h.update(f"unreadable {exc.errno}".encode())
        if rec.landmarks is not None:
            h.update(np.ascontiguousarray(rec.landmarks, dtype=np.float64).tobytes())
    return h.hexdigest()


def _align_one(job: tuple[int, Record, AlignSpec]):
    index, rec, spec = job
    try:
        image = load_rgb(rec.path)
        if min(image.shape[:2]) < MIN_SIDE:
            return index, None, "", too_small(image), float("nan"), ""
        face = align_face(image, spec, rec.landmarks)
    except (ValueError, OSError, cv2.error) as exc:
        return index, None, "", str(exc), float("nan"), ""
    residual = float("nan")
    if face.method == "landmarks":
        moved = transform_points(face.matrix, eyes_from_landmarks(rec.landmarks))
        residual = float(np.abs(moved - spec.eye_targets()).max())
    return index, face.image, face.method, "", residual, face.rejected


def preprocess(
    records: list[Record], spec: AlignSpec, workers: int | None = None, progress: bool = True
) -> tuple[FaceArrays, dict]:
    """Aligns every record; unreadable images are warned about by name and skipped."""
    n = len(records)
    images = np.zeros((n, spec.size, spec.size, 3), np.uint8)
    ok = np.zeros(n, bool)
    methods = np.empty(n, dtype=object)
    residuals = np.full(n, np.nan)
    skipped, rejected = [], []
    workers = workers or os.cpu_count() or 1
    jobs = [(i, rec, spec) for i, rec in enumerate(records)]
    bar = tqdm(total=n, desc=f"aligning {spec.size}px", unit="img", disable=not progress)
    # Threads, not processes: Pillow and OpenCV release the GIL while they decode, detect and
    # warp, and a thread pool cannot hang the way forkserver / spawn workers do when the caller
    # is a notebook, `python -` or a script without a main guard (they re-import __main__).
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for result in pool.map(_align_one, jobs):
            _collect(result, records, images, ok, methods, residuals, skipped, rejected)
            bar.update()
    bar.close()
    keep = np.flatnonzero(ok)
    arrays = FaceArrays(
        images=images[keep],
        ages=np.array([records[i].age for i in keep], np.float32),
        persons=np.array([records[i].person for i in keep], dtype=str),
        names=np.array([records[i].path.name for i in keep], dtype=str),
        methods=np.array(methods[keep], dtype=str),
    )
    info = {
        "skipped": skipped,
        "landmarks_rejected": rejected,
        "method_counts": dict(Counter(arrays.methods.tolist())),
        "eye_residual_px_max": float(np.nanmax(residuals))
        if np.isfinite(residuals).any()
        else None,
    }
    return arrays, info


def _collect(result, records, images, ok, methods, residuals, skipped, rejected) -> None:
    index, image, method, error, residual, why = result
    if why:
        rejected.append({"file": records[index].path.name, "reason": why, "method": method})
    if image is None:
        path = records[index].path
        reason = error.removeprefix(f"{path.name}: ")
        warnings.warn(f"{path}: {reason}; skipped", DataWarning, stacklevel=4)
        skipped.append({"file": path.name, "error": reason})
        return
    images[index], ok[index], methods[index], residuals[index] = image, True, method, residual


def cached_faces(
    records: list[Record],
    spec: AlignSpec,
    tag: str,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FaceArrays:
    """Returns the aligned arrays for ``records``, building and caching them if needed."""
    if not records:
        raise ValueError(f"{tag}: no images to preprocess")
    if any(rec.landmarks is None for rec in records):
        # The key names the detector that really runs (its stand-in when it is not installed).
        spec = replace(spec, detector=resolve_detector(spec.detector))
    key = cache_key(records, spec, tag)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = root / "arrays" / f"{tag}-{spec.size}px-{key[:16]}"
    if (entry / "meta.json").is_file():
        try:
            return _with_label_spread(_read_entry(entry), records)
        except CorruptEntryError as exc:  # cut short or damaged on disk: never used, rebuilt
            warnings.warn(f"{exc}; rebuilding it", DataWarning, stacklevel=2)
            _discard(entry)
    t0 = time.perf_counter()
    arrays, info = preprocess(records, spec, workers, progress)
    info["build_seconds"] = round(time.perf_counter() - t0, 2)
    _write_entry(entry, arrays, info, key, tag, spec)
    return _with_label_spread(_read_entry(entry), records)


def _with_label_spread(arrays: FaceArrays, records: list[Record]) -> FaceArrays:
    """The records' label spreads (``Record.age_std``) matched to the cached faces by file
    name; NaN where a set gives none or a name is not unique."""
    counts = Counter(rec.name for rec in records)
    spread = {
        rec.name: rec.age_std
        for rec in records
        if rec.age_std is not None and counts[rec.name] == 1
    }
    arrays.age_stds = np.array([spread.get(n, np.nan) for n in arrays.names], np.float32)
    return arrays


class CorruptEntryError(ValueError):
    """A cache entry whose files do not match what was written: named, then rebuilt."""


def _checksum(images: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(images)).cast("B")) & 0xFFFFFFFF


def _discard(entry: Path) -> None:
    """Moves a bad entry out of the way first (one rename), so that no reader sees it half gone."""
    aside = entry.with_name(f".corrupt-{entry.name}-{os.getpid()}")
    try:
        os.rename(entry, aside)
    except OSError:
        return  # another process moved it already
    shutil.rmtree(aside, ignore_errors=True)


def _write_entry(entry: Path, arrays: FaceArrays, info: dict, key: str, tag: str, spec) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    _sweep(entry)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-{os.getpid()}-"))
    try:
        np.save(tmp / "images.npy", arrays.images)
        meta = {
            "key": key,
            "tag": tag,
            "spec": asdict(spec),
            "version": PREPROCESS_VERSION,
            "count": len(arrays),
            "images_crc32": _checksum(arrays.images),
            "ages": arrays.ages.tolist(),
            "persons": arrays.persons.tolist(),
            "names": arrays.names.tolist(),
            "methods": arrays.methods.tolist(),
            **info,
        }
        write_checked_json(tmp / "meta.json", meta)
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # not a concurrent build that won the race
                raise
    except OSError as exc:
        if exc.filename is None:  # a full disk names no file
            free = shutil.disk_usage(entry.parent).free / 1e6
            raise OSError(
                exc.errno or errno.ENOSPC,
                f"cannot write cache entry {entry} ({exc.strerror or exc}): {free:.0f} MB free "
                f"there, the entry needs {arrays.images.nbytes / 1e6:.0f} MB",
            ) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep(entry: Path) -> None:
    """Removes what killed builds of this entry left behind: their temporary folders, named
    with the builder's process id, once that process is gone."""
    for tmp in entry.parent.glob(f".{entry.name}-*-*"):
        pid = tmp.name[len(entry.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_entry(entry: Path) -> FaceArrays:
    """The entry's arrays; :class:`CorruptEntryError` naming the file when any part is
    unreadable, cut short or changed since it was written (the images' CRC-32)."""
    try:
        meta = read_checked_json(entry / "meta.json")
    except CorruptFileError as exc:
        why = str(exc).removeprefix(f"{entry / 'meta.json'}: ")
        raise CorruptEntryError(f"cache entry {entry}: meta.json {why}") from exc
    try:
        images = np.load(entry / "images.npy")
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptEntryError(f"cache entry {entry}: images.npy unreadable ({exc})") from exc
    if len(images) != meta.get("count"):
        raise CorruptEntryError(
            f"cache entry {entry}: {len(images)} images, meta.json says {meta.get('count')}"
        )
    if "images_crc32" in meta and _checksum(images) != meta["images_crc32"]:
        raise CorruptEntryError(f"cache entry {entry}: images.npy changed since it was written")
    return FaceArrays(
        images=images,
        ages=np.array(meta["ages"], np.float32),
        persons=np.array(meta["persons"], dtype=str),
        names=np.array(meta["names"], dtype=str),
        methods=np.array(meta["methods"], dtype=str),
        key=meta["key"],
        meta={k: v for k, v in meta.items() if k not in ("ages", "persons", "names", "methods")},
    )
