"""A trained age model's MAE when its faces come from a detector instead of landmarks.

``agezoo predict`` sees photos without landmarks, so a model is only as good there as the
detector's crops let it be. This scores one model (a run folder, a model file or a registered
name) on the held-out people of All-Age-Faces (its official test list, ``val.txt``) and APPA
(its official ``valid`` split), with each face found by each detector asked for (no landmarks),
the largest face per photo, the test-time flip on; a photo where no face is found is
centre-cropped, as ``--fallback-center`` would, and counted. Score it only on people the model
was not trained on (the AAF-pretrained and general models never saw these test people; a model
trained on APPA's valid split must not be scored on it).

Usage: AGEZOO_AAF_DIR=... AGEZOO_APPA_DIR=... python -m benchmarks.detector_accuracy MODEL
           [--detectors blazeface mtcnn] [--sets aaf appa] [--limit N]
Writes benchmarks/results/detector_accuracy.json (one entry per model and detector).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from common import datasets, metrics
from common.detectors import DEFAULT_DETECTOR, DETECTORS

OUT = Path(__file__).parent / "results" / "detector_accuracy.json"


def held_out(name: str, limit: int = 0, seed: int = 0) -> list[datasets.Record]:
    """The records of a data set's official test people (every one, or ``limit`` of them)."""
    entry = datasets.dataset(name)
    test = set(entry.official_test(None))
    records = [r for r in entry.read(None) if r.person in test]
    if limit and limit < len(records):
        pick = np.random.default_rng(seed).choice(len(records), limit, replace=False)
        records = [records[i] for i in sorted(pick)]
    return records


def score(predictor, records: list[datasets.Record], detector: str) -> dict:
    predictor.use_detector(detector)
    t0 = time.perf_counter()
    result = predictor.predict_inputs(
        [r.path for r in records], every_face=False, fallback_center=True, progress=True
    )
    seconds = time.perf_counter() - t0
    by_file = {f.file: f for f in result.faces}
    kept = [(r, by_file[str(r.path)]) for r in records if str(r.path) in by_file]
    true = np.array([r.age for r, _ in kept])
    pred = np.array([f.age for _, f in kept])
    inside = [f.low <= r.age <= f.high for r, f in kept if np.isfinite(f.low)]
    methods: dict[str, int] = {}
    for _, f in kept:
        methods[f.method] = methods.get(f.method, 0) + 1
    return {
        "images": len(records),
        "scored": len(kept),
        "failures": len(result.failures),
        "methods": methods,
        "mae": round(metrics.mae(pred, true), 3),
        "mae_by_decade": metrics.mae_by_decade(pred, true),
        "interval90_coverage": round(float(np.mean(inside)), 3) if inside else None,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run folder, model file or registered age model")
    parser.add_argument("--detectors", nargs="+", default=[DEFAULT_DETECTOR, "mtcnn"])
    parser.add_argument("--sets", nargs="+", default=["aaf", "appa"])
    parser.add_argument("--limit", type=int, default=0, help="N random test images per set")
    args = parser.parse_args(argv)
    unknown = set(args.detectors) - set(DETECTORS)
    if unknown:
        parser.error(f"unknown detectors {sorted(unknown)}; known: {list(DETECTORS)}")
    predictor = load_predictor(args.model)
    sets = {name: held_out(name, args.limit) for name in args.sets}
    entry = {
        "model": str(args.model),
        "card": {k: getattr(predictor.card, k) for k in ("framework", "arch", "size", "detector")},
        "flip": predictor.flip,
        "sets": {
            name: {det: score(predictor, records, det) for det in args.detectors}
            for name, records in sets.items()
        },
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = json.loads(OUT.read_text()) if OUT.is_file() else {}
    out[f"{args.model}"] = entry
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
