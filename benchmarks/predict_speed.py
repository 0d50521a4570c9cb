"""Speed of ``agezoo predict`` end to end, and of the exported artefacts, on this machine.

For each backend (PyTorch, Keras, ONNX Runtime) it predicts every face in a folder of FG-NET
photos (decode, detect, align, one batched inference call) and reports photos/s with the share
of each stage. The model is MobileNetV2 at ``--size`` px (ImageNet backbone when its weights
are at hand, random age head): speed does not depend on what the weights learned. It also
exports the model (ONNX from PyTorch; ``.keras`` and SavedModel from Keras, the Keras network
being the PyTorch one ported) and records each artefact's size and inference images/s.

Usage: AGEZOO_FGNET_DIR=... python -m benchmarks.predict_speed [--photos 200] [--size 112]
Writes benchmarks/results/predict_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from common import results
from common.config import Config, DataConfig, LossConfig, ModelConfig, save_config, to_dict
from common.datasets import fgnet_root, load_fgnet
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


def time_predict(model_ref: Path, paths: list[Path]) -> dict:
    predictor = load_predictor(model_ref)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--detector", default="mtcnn", choices=["mtcnn", "haar"])
    args = parser.parse_args(argv)
    records = load_fgnet(fgnet_root())
    paths = [r.path for r in records[:: max(1, len(records) // args.photos)][: args.photos]]
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.size, args.detector)
        result = {
            "what": "agezoo predict end to end on FG-NET photos (all faces per photo)",
            "size": args.size,
            "exports": models.pop("exports"),
            "backends": {name: time_predict(ref, paths) for name, ref in models.items()},
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
    for name in ("onnx", "keras"):  # temporary paths mean nothing once the folder is gone
        for key in ("onnx", "keras", "saved_model"):
            result["exports"][name].pop(key, None)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
