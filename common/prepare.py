"""Data preparation, the step before training: find the data, align, cache, split, show.

``python -m common.prepare --dataset fgnet`` (what ``make data`` runs) verifies FG-NET against
the shipped manifest, builds the aligned cache, writes the LOPO fold file and a contact sheet.
Training code calls :func:`load_faces` and :func:`build_folds`, which reuse the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import datasets, splits
from common.cache import FaceArrays, cached_faces, concat_faces
from common.config import DataConfig, ProtocolConfig
from common.contact_sheet import contact_sheet
from common.faces import AlignSpec
from common.synthetic import make_synthetic


def load_records(data: DataConfig) -> list[datasets.Record]:
    """The records of a real data set named by the config."""
    if data.dataset == "fgnet":
        root = Path(data.root) if data.root else datasets.fgnet_root()
        return datasets.load_fgnet(root)
    if data.dataset == "aaf":
        return datasets.load_aaf(datasets.aaf_root(data.root))
    if data.root is None:
        raise ValueError(f"data.root must name the {data.dataset} folder or file")
    readers = {"utkface": datasets.load_utkface, "csv": datasets.load_csv}
    if data.dataset not in readers:
        known = ["fgnet", *readers, "synthetic"]
        raise ValueError(f"unknown data.dataset {data.dataset!r}; known: {known}")
    return readers[data.dataset](data.root)


def load_faces(data: DataConfig, progress: bool = True) -> FaceArrays:
    """Aligned uint8 faces for the configured data set (cached, or generated if synthetic).

    ``aaf+fgnet`` (any names joined by ``+``) combines data sets found through their
    environment variables; person ids become ``aaf:…`` / ``fgnet:…``.
    """
    if "+" in data.dataset:
        if data.root:
            raise ValueError("combined data sets are found through AGEZOO_*_DIR, not data.root")
        names = data.dataset.split("+")
        return concat_faces({n: load_faces(replace(data, dataset=n), progress) for n in names})
    if data.dataset == "synthetic":
        return make_synthetic(data.synthetic_persons, data.synthetic_images_per_person, data.size)
    records = load_records(data)
    spec = AlignSpec(size=data.size, margin=data.margin, detector=data.detector)
    return cached_faces(records, spec, tag=data.dataset, progress=progress)


def build_folds(
    protocol: ProtocolConfig, persons: np.ndarray, data: DataConfig | None = None
) -> list[splits.Fold]:
    """The folds the protocol asks for, over the given per-image person ids.

    ``official`` takes the data set's own test list (All-Age-Faces' ``val.txt``).
    """
    if protocol.kind == "official":
        if data is None or data.dataset != "aaf":
            raise ValueError("protocol.kind=official exists for data.dataset=aaf only")
        test = datasets.aaf_split(datasets.aaf_root(data.root))["val"]
        return splits.official_split(persons, test, protocol.val_fraction, protocol.seed)
    if protocol.kind == "lopo":
        return splits.lopo_folds(persons, protocol.val_fraction, protocol.seed)
    if protocol.kind == "kfold":
        return splits.group_kfold(persons, protocol.k, protocol.val_fraction, protocol.seed)
    if protocol.kind == "holdout":
        return splits.holdout_split(
            persons, protocol.test_fraction, protocol.val_fraction, protocol.seed
        )
    raise ValueError(
        f"unknown protocol.kind {protocol.kind!r}; known: lopo, kfold, holdout, official"
    )


def sheet_sample(arrays: FaceArrays, n: int = 96, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` images spread over people and ages, sorted by person and age."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(arrays), size=min(n, len(arrays)), replace=False))
    return idx[np.lexsort((arrays.ages[idx], arrays.persons[idx]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="fgnet", choices=["fgnet", "utkface", "aaf", "csv", "synthetic"]
    )
    parser.add_argument("--root", help="data folder or CSV (FG-NET: AGEZOO_FGNET_DIR instead)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write folds and the contact sheet "
        "(default: the cache directory, outside the repository)",
    )
    args = parser.parse_args(argv)
    data = DataConfig(dataset=args.dataset, root=args.root, size=args.size, margin=args.margin)
    out = args.out or datasets.default_cache_dir() / "prepared" / f"{args.dataset}-{args.size}px"
    try:
        if args.dataset == "fgnet":
            root = Path(args.root) if args.root else datasets.fgnet_root()
            data = DataConfig(dataset="fgnet", root=str(root), size=args.size, margin=args.margin)
            report = datasets.verify_fgnet(root)
            print(f"FG-NET at {root}: {report}")
            if not report.ok:
                print(
                    "warning: this copy differs from the published FG-NET; results will not "
                    "be comparable with the literature",
                    file=sys.stderr,
                )
        t0 = time.perf_counter()
        arrays = load_faces(data)
    except (datasets.DatasetNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{len(arrays)} aligned faces, {len(set(arrays.persons))} people, "
        f"ages {arrays.ages.min():g}-{arrays.ages.max():g}, {arrays.images.shape[1]} px, "
        f"ready in {time.perf_counter() - t0:.1f} s"
    )
    if arrays.meta.get("method_counts"):
        rejected = arrays.meta.get("landmarks_rejected", [])
        print(
            f"alignment: {arrays.meta['method_counts']}; landmarks rejected as implausible: "
            f"{len(rejected)}; skipped: {len(arrays.meta.get('skipped', []))}; "
            f"cache key {arrays.key[:16]}"
        )
    if args.dataset == "aaf":
        kind, protocol = "official", ProtocolConfig(kind="official")
    else:
        kind, protocol = "lopo", ProtocolConfig(kind="lopo")
    folds = build_folds(protocol, arrays.persons, data)
    fold_file = out / f"folds_{kind}.json"
    fold_hash = splits.save_folds(
        folds, fold_file, meta={"dataset": args.dataset, "preprocess": arrays.key}
    )
    print(f"{kind} folds: {len(folds)} -> {fold_file} (sha256 {fold_hash[:16]})")
    idx = sheet_sample(arrays)
    spec = AlignSpec(size=args.size, margin=args.margin)
    labels = [f"{arrays.persons[i]} age {arrays.ages[i]:g}" for i in idx]
    sheet = contact_sheet(
        arrays.images[idx], labels, out / "contact_sheet.png", eye_targets=spec.eye_targets()
    )
    print(f"contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
