"""The data-set table: each name's reader, where its files are found, and its protocol defaults.

Readers turn a face data set on disk into records (path, person, age, landmarks); names that do
not parse are reported with the file name and skipped, never guessed. A new data set is one
entry in :data:`DATASETS` plus its reader module; ``load_records``, ``make data``, the training
usage text and the argparse choices all read this table.

Example:
    >>> dataset("aaf").official_test is not None, dataset("utkface").needs_root
    (True, True)
    >>> "synthetic" in dataset_names()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.datasets.aaf import aaf_root, aaf_split, load_aaf, read_aaf_points
from common.datasets.appa import appa_root, appa_split, load_appa
from common.datasets.base import (
    IMAGE_SUFFIXES,
    DatasetNotFoundError,
    DataWarning,
    DuplicateReport,
    Record,
    default_cache_dir,
    download_file,
    find_duplicates,
    records_summary,
    sha256_file,
)
from common.datasets.fgnet import (
    FGNET_URL,
    fgnet_manifest,
    fgnet_root,
    load_fgnet,
    read_pts,
    safe_extract_zip,
    verify_fgnet,
)
from common.datasets.generic import load_csv, load_utkface

SYNTHETIC = "synthetic"  # generated faces (common.synthetic), no files: not a reader entry


@dataclass(frozen=True)
class Dataset:
    """One data set the configs can name (``data.dataset``).

    Attributes:
        name: the config's name for it.
        read: ``data.root`` (or ``None``) → records; finds the files itself when it can.
        needs_root: whether ``data.root`` must name its folder or file.
        official_test: ``data.root`` → the person ids of its own test list
            (``protocol.kind=official``); ``None`` when it has none.
        verify: ``data.root`` (or ``None``) → (the folder found, a report with ``ok`` and a
            readable ``str``): checks a copy against a published manifest (``make data``).
        description: one line for usage texts.
    """

    name: str
    read: Callable[[str | None], list[Record]]
    description: str
    needs_root: bool = False
    official_test: Callable[[str | None], list[str]] | None = None
    verify: Callable[[str | None], tuple[Path, object]] | None = None

    @property
    def default_protocol(self) -> str:
        """The protocol ``make data`` writes folds for: the official split where one exists."""
        return "official" if self.official_test else "lopo"


def _fgnet(root: str | None) -> list[Record]:
    return load_fgnet(Path(root) if root else fgnet_root())


def _verify_fgnet(root: str | None) -> tuple[Path, object]:
    folder = Path(root) if root else fgnet_root()
    return folder, verify_fgnet(folder)


def _with_root(name: str, reader: Callable[[str], list[Record]]):
    def read(root: str | None) -> list[Record]:
        if root is None:
            raise ValueError(f"data.root must name the {name} folder or file")
        return reader(root)

    return read


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "fgnet",
            _fgnet,
            "FG-NET, 1002 images of 82 people with landmarks (AGEZOO_FGNET_DIR)",
            verify=_verify_fgnet,
        ),
        Dataset(
            "aaf",
            lambda root: load_aaf(aaf_root(root)),
            "All-Age-Faces, 13,322 aligned faces, official split (AGEZOO_AAF_DIR)",
            official_test=lambda root: aaf_split(aaf_root(root))["val"],
        ),
        Dataset(
            "appa",
            lambda root: load_appa(appa_root(root)),
            "ChaLearn LAP 2016 apparent ages, 5,206 web crops, official split (AGEZOO_APPA_DIR)",
            official_test=lambda root: appa_split(appa_root(root))["valid"],
        ),
        Dataset(
            "utkface",
            _with_root("utkface", load_utkface),
            "UTKFace, age_gender_race_date.jpg names (data.root)",
            needs_root=True,
        ),
        Dataset(
            "csv",
            _with_root("csv", load_csv),
            "a CSV with path,age[,person] (data.root)",
            needs_root=True,
        ),
    )
}


def dataset_names() -> list[str]:
    """Every name ``data.dataset`` takes alone (``+`` joins several)."""
    return [*DATASETS, SYNTHETIC]


def dataset(name: str) -> Dataset:
    """The table entry of a data set; a clear error for an unknown name."""
    if name not in DATASETS:
        raise ValueError(f"unknown data.dataset {name!r}; known: {dataset_names()}")
    return DATASETS[name]


__all__ = [
    "DATASETS",
    "FGNET_URL",
    "IMAGE_SUFFIXES",
    "SYNTHETIC",
    "DataWarning",
    "Dataset",
    "DatasetNotFoundError",
    "DuplicateReport",
    "Record",
    "aaf_root",
    "aaf_split",
    "appa_root",
    "appa_split",
    "load_appa",
    "dataset",
    "dataset_names",
    "default_cache_dir",
    "download_file",
    "fgnet_manifest",
    "fgnet_root",
    "find_duplicates",
    "load_aaf",
    "load_csv",
    "load_fgnet",
    "load_utkface",
    "read_aaf_points",
    "read_pts",
    "records_summary",
    "safe_extract_zip",
    "sha256_file",
    "verify_fgnet",
]
