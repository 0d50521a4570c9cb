"""Where a photo's time goes in ``agezoo predict``, and how each stage scales on two threads.

On the same photos as ``benchmarks.predict_speed`` (200 tight crops of APPA, 200 FG-NET
photos), with the default model and detector: each stage alone, all photos on one thread and
then split over a pool of two, as milliseconds of wall time a photo (best of ``--repeats``):
decode, BlazeFace (letterbox and model), the decoding of its outputs and non-maximum suppression,
the 5 points (our compiled walker of dlib's trees, or dlib where it is not built), the
alignment, and the age model with the test-time flip (in the batches predict sends, on ONNX
Runtime's own two threads; "2 threads": two batches at once). A stage that runs no faster on
two threads than on one holds Python's GIL, and no thread pool can overlap it. Then the whole
predict path with one worker and two, and without the flip.

The sum of the one-thread stage times, halved, is what two cores could give if every stage ran
on both at once: ``ideal_photos_per_s``, beside the measured rate.

Usage: AGEZOO_FGNET_DIR=... AGEZOO_APPA_DIR=... python -m benchmarks.predict_stages
           [--photos 200] [--repeats 5] [--out FILE]
Writes benchmarks/results/predict_stages.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from benchmarks.predict_speed import chip_paths
from common import results
from common.datasets import fgnet_root, load_fgnet
from common.detectors import blazeface as bf
from common.detectors.five_points import five_points_walker
from common.faces import align_detection, load_rgb

OUT = Path(__file__).parent / "results" / "predict_stages.json"


def best_ms(work, items: list, workers: int, repeats: int) -> float:
    """Best wall time of ``work`` over all ``items`` on a pool of ``workers``, ms an item."""
    best = float("inf")
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, items[:4]))  # warm-up: sessions and models load once a thread
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(work, items))
            best = min(best, time.perf_counter() - t0)
    return round(1000 * best / len(items), 3)


def box_corners(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x, y, x + w, y + h], float)


def stages(paths: list[Path], predictor, repeats: int) -> dict:
    """ms a photo of each stage on one thread and on two, and the whole predict path (with the
    flip and without; the predictor's own setting is restored)."""
    was, predictor.flip = predictor.flip, True
    images = [load_rgb(p) for p in paths]
    raw = [bf._forward(bf._letterbox(im)[0]) for im in images]
    found = [bf.detect_blazeface(im) for im in images]
    first = [(im, d[0]) for im, d in zip(images, found, strict=True) if d]
    spec = predictor.spec
    crops = np.stack([align_detection(im, spec, d).image for im, d in first])
    batches = [
        crops[i : i + predictor.batch_size] for i in range(0, len(crops), predictor.batch_size)
    ]
    work = {
        "decode": (lambda p: load_rgb(p), paths),
        "blazeface_model": (lambda im: bf._forward(bf._letterbox(im)[0]), images),
        "blazeface_decode_nms": (lambda out: bf.weighted_nms(*bf._decode(*out)), raw),
        "five_points": (lambda f: bf.refine_eyes(f[0], box_corners(f[1].box)), first),
        "align": (lambda f: align_detection(f[0], spec, f[1]), first),
        "age_model_flip": (predictor.outputs, batches),
    }
    out = {"photos": len(paths), "faces_aligned": len(crops), "stages_ms_per_photo": {}}
    for name, (fn, items) in work.items():
        per_item = {w: best_ms(fn, items, w, repeats) for w in (1, 2)}
        scale = len(items) / len(paths)  # per photo, whatever the items are
        out["stages_ms_per_photo"][name] = {
            f"{w}_thread{'s' if w > 1 else ''}": round(ms * scale, 3) for w, ms in per_item.items()
        }
        out["stages_ms_per_photo"][name]["speed_up"] = round(per_item[1] / per_item[2], 2)
    one = sum(v["1_thread"] for v in out["stages_ms_per_photo"].values())
    out["one_thread_sum_ms"] = round(one, 3)
    out["ideal_photos_per_s"] = round(2000 / one, 1)
    runs = {"1_worker": (True, 1), "2_workers": (True, 2), "2_workers_no_flip": (False, 2)}
    rates = {label: [] for label in runs}
    for _ in range(repeats):  # interleaved: the machine's pace drifts
        for label, (flip, workers) in runs.items():
            predictor.flip = flip
            t0 = time.perf_counter()
            predictor.predict_inputs(paths, workers=workers)
            rates[label].append(len(paths) / (time.perf_counter() - t0))
    predictor.flip = was
    out["predict_photos_per_s"] = {k: round(max(v), 1) for k, v in rates.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="a model reference (default: the default)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    predictor = load_predictor(args.model)
    if not predictor.spec.detector.startswith("blazeface"):
        raise SystemExit(f"the model's detector is {predictor.spec.detector}; this needs BlazeFace")
    records = load_fgnet(fgnet_root())
    sets = {
        "fgnet": [r.path for r in records[:: max(1, len(records) // args.photos)][: args.photos]]
    }
    appa = os.environ.get("AGEZOO_APPA_DIR")
    if appa:
        sets["chips"] = chip_paths(Path(appa) / "images", args.photos)
    predictor.predict_paths(sets["fgnet"][:2])
    result = {
        "what": "agezoo predict's stages alone, on one thread and on two, ms of wall time a photo",
        "model": predictor.card.source,
        "detector": predictor.spec.detector,
        "blazeface_runtime": "onnxruntime" if bf.onnx_path() else "opencv",
        "five_points": "compiled walker" if five_points_walker(bf.five_points_path()) else "dlib",
        "sets": {name: stages(paths, predictor, args.repeats) for name, paths in sets.items()},
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }
    results.atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
