"""ChaLearn LAP 2016 apparent-age faces (the APPA-REAL images; Escalera et al., CVPRW 2016):
tight 224 px web crops, mostly of white people, labelled with the **apparent** age, the mean of
about 38 votes, and the votes' standard deviation.

Found through ``AGEZOO_APPA_DIR`` (or ``data.root``): ``gt/{train,valid}_gt.csv`` (the official
label files, ``image,mean,stdv``) and the crops under ``images/`` (any sub-folder). It is never
downloaded. The label files list ids without a crop; they are counted and named in one warning.
There are no identities: every image is its own person, except byte-identical files and the
near-duplicate groups of ``manifest.csv`` when the copy has one, which count as one person each.
The age is the apparent mean rounded to a whole year; the votes' std stays with the record.
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path

from common.datasets.base import IMAGE_SUFFIXES, DatasetNotFoundError, Record, sha256_file, warn

APPA_SPLITS = ("train", "valid")


def appa_root(root: str | Path | None = None) -> Path:
    """APPA's folder: ``root``, else ``$AGEZOO_APPA_DIR``."""
    root = root or os.environ.get("AGEZOO_APPA_DIR")
    if not root:
        raise DatasetNotFoundError(
            "APPA: set AGEZOO_APPA_DIR (or data.root) to the folder with gt/ and images/ of the "
            "ChaLearn LAP 2016 apparent-age data (http://chalearnlap.cvc.uab.es/dataset/26/)"
        )
    if not (Path(root) / "gt").is_dir():
        raise DatasetNotFoundError(f"APPA: {root} has no gt/ folder of label files")
    return Path(root)


def _near_duplicate_groups(root: Path) -> dict[str, str]:
    """image id → group name, from the copy's manifest (absent: no groups)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return {}
    groups = {}
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            group = row.get("near_dup_group") or row.get("dup_group")
            if group:
                groups[row["image_id"]] = f"appa-group-{group}"
    return groups


def load_appa(root: str | Path, splits: tuple[str, ...] = APPA_SPLITS) -> list[Record]:
    """The records of the official label files of ``splits`` whose crop is on disk."""
    root = Path(root)
    images = {p.name: p for p in image_files_under(root / "images")}
    groups = _near_duplicate_groups(root)
    records, missing = [], {}
    for split in splits:
        label_file = root / "gt" / f"{split}_gt.csv"
        if not label_file.is_file():
            raise DatasetNotFoundError(f"APPA: {label_file} not found")
        with open(label_file, newline="") as fh:
            for lineno, row in enumerate(csv.DictReader(fh), 2):
                name = (row.get("image") or "").strip()
                try:
                    mean, std = float(row["mean"]), float(row["stdv"])
                except (KeyError, TypeError, ValueError):
                    warn(f"{label_file.name} line {lineno}: no numeric mean / stdv; skipped")
                    continue
                if name not in images:
                    missing[split] = missing.get(split, 0) + 1
                    continue
                person = groups.get(name, f"appa-{Path(name).stem}")
                records.append(Record(images[name], person, float(round(mean)), age_std=std))
    if missing:
        counts = ", ".join(f"{n} of {s}" for s, n in missing.items())
        warn(f"APPA: ids listed in the label files without a crop on disk: {counts}")
    return _byte_duplicates_as_one_person(records)


def image_files_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetNotFoundError(f"APPA: no images/ folder in {folder.parent}")
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _byte_duplicates_as_one_person(records: list[Record]) -> list[Record]:
    by_hash: dict[str, str] = {}
    out = []
    for rec in records:
        digest = sha256_file(rec.path)
        person = by_hash.setdefault(digest, rec.person)
        out.append(rec if person == rec.person else replace(rec, person=person))
    return out


def appa_split(root: str | Path) -> dict[str, list[str]]:
    """The official split as person ids: ``{"train": [...], "valid": [...]}``."""
    out: dict[str, list[str]] = {split: [] for split in APPA_SPLITS}
    for split in APPA_SPLITS:
        out[split] = sorted({r.person for r in load_appa(root, (split,))})
    return out
