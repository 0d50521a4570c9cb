"""Data sets read from names or a table alone: UTKFace and a generic CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from common.datasets.base import Record, image_files, warn

UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{17})\.jpg(\.chip\.jpg)?$", re.IGNORECASE)


def load_utkface(root: str | Path) -> list[Record]:
    """Reads UTKFace (``age_gender_race_date.jpg[.chip.jpg]``).

    UTKFace has no identity labels, so each image is its own "person": splits are then
    image-disjoint, not identity-disjoint.
    """
    records = []
    for path in image_files(Path(root)):
        m = UTK_NAME.match(path.name)
        if not m:
            warn(f"UTKFace image {path.name}: name is not age_gender_race_date.jpg; skipped")
            continue
        records.append(Record(path, path.name.split(".")[0], float(int(m.group(1)))))
    return records


# --------------------------------------------------------------------------- CSV


def load_csv(csv_path: str | Path) -> list[Record]:
    """Reads a CSV with a header ``path,age[,person]``; paths are relative to the CSV's folder.

    Without a ``person`` column each image is its own person.
    """
    csv_path = Path(csv_path)
    records = []
    # Paths that are not UTF-8 keep their bytes, as the file system gives names (os.fsdecode)
    with open(csv_path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "age"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: header must have columns path,age[,person]")
        for lineno, row in enumerate(reader, 2):
            where = f"{csv_path.name} line {lineno}"
            try:
                age = float(row["age"])
            except (TypeError, ValueError):
                warn(f"{where}: age {row['age']!r} is not a number; skipped")
                continue
            if not (0 <= age < 150) or not row.get("path"):
                warn(f"{where}: missing path or age {age} out of range; skipped")
                continue
            path = Path(row["path"])
            path = path if path.is_absolute() else csv_path.parent / path
            person = (row.get("person") or "").strip() or path.name
            records.append(Record(path, person, age))
    return records
