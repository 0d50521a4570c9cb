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
    """The records of a real data set named by the config (``common.datasets.DATASETS``)."""
    return datasets.dataset(data.dataset).read(data.root)


def load_faces(data: DataConfig, progress: bool = True) -> FaceArrays:
    """Aligned uint8 faces for the configured data set (cached, or generated if synthetic).

    ``aaf+fgnet`` (any names joined by ``+``) combines data sets found through their
    environment variables; person ids become ``aaf:…`` / ``fgnet:…``. ``landmarks=False``
    ignores a data set's landmarks and aligns every image by the detector, as ``agezoo
    predict`` sees photos (a model meant for predict trains on such crops).
    """
    if "+" in data.dataset:
        if data.root:
            raise ValueError("combined data sets are found through AGEZOO_*_DIR, not data.root")
        names = data.dataset.split("+")
        return concat_faces({n: load_faces(replace(data, dataset=n), progress) for n in names})
    if data.dataset == datasets.SYNTHETIC:
        return make_synthetic(data.synthetic_persons, data.synthetic_images_per_person, data.size)
    records = load_records(data)
    if not data.landmarks:
        records = [replace(r, landmarks=None) for r in records]
    spec = AlignSpec(size=data.size, margin=data.margin, detector=data.detector)
    return cached_faces(records, spec, tag=data.dataset, progress=progress)


def build_folds(
    protocol: ProtocolConfig, persons: np.ndarray, data: DataConfig | None = None
) -> list[splits.Fold]:
    """The folds the protocol asks for, over the given per-image person ids.

    ``official`` takes the data set's own test list (All-Age-Faces' ``val.txt``), from the
    data-set table. Of combined sets (``aaf+appa+fgnet``) it takes the union of the parts'
    test lists; a part without one (FG-NET) has no test people and trains and validates only.
    """
    if protocol.train_on_test and protocol.kind != "official":
        raise ValueError("protocol.train_on_test=true needs protocol.kind=official")
    if protocol.kind == "official":
        return splits.official_split(
            persons,
            official_test_people(data),
            protocol.val_fraction,
            protocol.seed,
            protocol.train_on_test,
        )
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


def official_test_people(data: DataConfig | None) -> list[str]:
    """The official test people of a data set, or of the parts of a combined one (prefixed)."""
    names = data.dataset.split("+") if data is not None else []
    entries = [datasets.DATASETS.get(n) for n in names]
    with_lists = [d.name for d in datasets.DATASETS.values() if d.official_test]
    if not entries or not any(e is not None and e.official_test for e in entries):
        raise ValueError(
            f"protocol.kind=official exists for data.dataset={'|'.join(with_lists)} only "
            "(or sets combined with one of them)"
        )
    if len(names) == 1:
        return list(entries[0].official_test(data.root))
    return [
        f"{name}:{person}"
        for name, entry in zip(names, entries, strict=True)
        if entry is not None and entry.official_test
        for person in entry.official_test(None)
    ]


def sheet_sample(arrays: FaceArrays, n: int = 96, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` images spread over people and ages, sorted by person and age."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(arrays), size=min(n, len(arrays)), replace=False))
    return idx[np.lexsort((arrays.ages[idx], arrays.persons[idx]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fgnet", choices=datasets.dataset_names())
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
        entry = datasets.DATASETS.get(args.dataset)
        if entry is not None and entry.verify is not None:
            root, report = entry.verify(args.root)
            data = replace(data, root=str(root))
            print(f"{args.dataset} at {root}: {report}")
            if not report.ok:
                print(
                    f"warning: this copy differs from the published {args.dataset}; results "
                    "will not be comparable with the literature",
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
    entry = datasets.DATASETS.get(args.dataset)
    kind = entry.default_protocol if entry else "lopo"
    protocol = ProtocolConfig(kind=kind)
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
