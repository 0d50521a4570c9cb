"""Trained weights with a model card: AAF pretraining and the zoo's general model.

Usage:
    make pretrain FRAMEWORK=torch|keras MODEL=mobilenet_v2   (python -m agezoo.pretrain ...)
    make model FRAMEWORK=torch|keras                          (... --kind general)
    make release                                              (... --kind release, then
                                                               python -m agezoo.release)

``aaf`` trains on the ``pretrain-aaf`` preset (model selection on AAF validation people, never
on FG-NET) and publishes the best weights; ``model.weights=aaf`` then loads them, hash-checked,
in the same framework (``weights.aaf_weights``). ``general`` trains MobileNetV2 from those
weights on AAF and all of FG-NET (``common/configs/general.yaml``), calibrated, and publishes a
predict-ready model (PyTorch checkpoint / ``.keras``) that ``agezoo predict`` uses when no model
is named. Files go to the trained-weights folder of the cache (``$AGEZOO_CACHE/weights``), named
with their hash, each with its model card as JSON and Markdown; copies placed in
``$AGEZOO_WEIGHTS_DIR`` are found too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from agezoo.backends import TRAINING, backend
from common import results
from common.config import load_config, to_dict
from common.predictor import ModelCard
from common.results import atomic_write_json, atomic_write_text

PRESETS = {
    "aaf": "pretrain-aaf",
    "aaf-appa": "pretrain-aaf-appa",
    "general": "general",
    "release": "release",
    "release-all": "release",
}
# What a kind sets beyond its preset: the final release trains on its held-out people too.
KIND_OVERRIDES = {"release-all": ["protocol.train_on_test=true"]}
RELEASES = ("release", "release-all")  # exported by agezoo.release, not published here
WEIGHTS_ONLY = ("aaf", "aaf-appa")  # published as weights to start from (model.weights=KIND)
# Models with ImageNet weights to start from (here: MobileNetV2) take pretrain-aaf; the others
# train from scratch, which needs a longer schedule.
SCRATCH_PRESET = "pretrain-aaf-scratch"
DATA = {
    "aaf": "All-Age-Faces (half-resolution copy), deduplicated: byte-identical files kept once, "
    "groups with conflicting ages dropped; official split, val.txt people as test",
    "aaf-appa": "All-Age-Faces (deduplicated) + APPA (ChaLearn LAP 2016 train + valid, apparent "
    "ages), every face aligned by the default detector; AAF's official test people and APPA's "
    "valid split held out as the test set; validation people drawn from the rest. No FG-NET.",
    "general": "All-Age-Faces (deduplicated) + all 1002 FG-NET images; validation people drawn "
    "from both; no test set. It has seen every FG-NET person: NEVER score it on FG-NET.",
    "release": "All-Age-Faces (deduplicated) + APPA (ChaLearn LAP 2016 train + valid, apparent "
    "ages) + all 1002 FG-NET images, every face aligned by the default detector; AAF's official "
    "test people and APPA's valid split held out as the test set; validation people drawn from "
    "the rest. It has seen every FG-NET person: NEVER score it on FG-NET.",
    "release-all": "All-Age-Faces (deduplicated) + APPA (ChaLearn LAP 2016 train + valid, "
    "apparent ages) + all 1002 FG-NET images, every face aligned by the default detector: the "
    "release recipe with its held-out people trained on too (AAF's official test people, APPA "
    "valid); validation people those of the held-out variant. NEVER score it on FG-NET, "
    "All-Age-Faces or APPA train + valid: its held-out figures are its held-out variant's.",
}

# The data sets whose terms a published model inherits.
TERMS = {
    "aaf": "All-Age-Faces",
    "aaf-appa": "All-Age-Faces; ChaLearn LAP 2016 / APPA-REAL",
    "general": "All-Age-Faces; FG-NET",
    "release": "All-Age-Faces; ChaLearn LAP 2016 / APPA-REAL; FG-NET",
    "release-all": "All-Age-Faces; ChaLearn LAP 2016 / APPA-REAL; FG-NET",
}


def preset_for(kind: str, model: str) -> str:
    """The training preset of ``make pretrain`` / ``make model`` for this model."""
    if kind == "aaf" and model != "mobilenet_v2":
        return SCRATCH_PRESET
    return PRESETS[kind]


def _train(framework: str, argv: list[str]) -> int:
    return backend(framework).module("train").main(argv)


def default_run_dir(kind: str, framework: str, model: str) -> str:
    """The run folder ``python -m agezoo.pretrain`` trains into when not told another."""
    return f"runs/{kind}-{framework}-{model}"


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """A finished run's (metrics, resolved config)."""
    metrics = json.loads((run_dir / results.METRICS).read_text())
    return metrics, to_dict(load_config(str(run_dir / results.CONFIG)))


def run_card(run_dir: Path, metrics: dict, cfg: dict) -> dict:
    """The card fields every published model shares: what it is, how it was trained and
    scored (``publish`` and ``agezoo.release`` add where its file is and what it is for)."""
    folds = json.loads((run_dir / results.FOLDS).read_text())["folds"][cfg["fold"]]
    size = cfg["data"]["size"]
    return {
        "arch": cfg["model"]["name"],
        "input_size": cfg["model"]["input_size"] or size,
        "crop": {
            "size": size,
            "margin": cfg["data"]["margin"],
            "detector": cfg["data"]["detector"],
        },
        "loss": cfg["loss"]["name"],
        "num_classes": cfg["data"]["num_classes"],
        "people": {part: len(folds[part]) for part in ("train", "val", "test")},
        "preprocess": metrics["preprocess"],
        "fold_hash": metrics["fold_hash"],
        "val_mae": metrics["best_val_mae"],
        "test_mae": metrics.get("test_mae"),
        "test_mae_by_decade": metrics.get("test", {}).get("mae_by_decade"),
        "calibration": metrics.get("calibration"),
        "epochs": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"] + 1,
        "train_minutes": round(metrics["train_seconds"] / 60, 1),
        "versions": metrics["versions"],
        "device": metrics["device"],
    }


def publish(run_dir: str | Path, framework: str, dest: str | Path, kind: str = "aaf") -> dict:
    """Copies a finished run's best model into ``dest`` with its card; returns the card.

    ``aaf``: the weights alone (``.pt`` state dict / ``.weights.h5``), for ``model.weights=aaf``.
    ``general``: a predict-ready model (the ``best.pt`` checkpoint / ``model.keras``).
    """
    run_dir, dest = Path(run_dir), Path(dest)
    metrics, cfg = read_run(run_dir)
    arch, size = cfg["model"]["name"], cfg["data"]["size"]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{kind}-{framework}-{arch}.tmp"
    if framework == "torch" and kind in WEIGHTS_ONLY:
        import torch

        state = (
            backend("torch").module("checkpoint").load_checkpoint_file(run_dir / results.TORCH_BEST)
        )
        torch.save(state["model"], tmp)
        suffix = ".pt"
    elif framework == "torch":
        shutil.copyfile(run_dir / results.TORCH_BEST, tmp)
        suffix = ".pt"
    elif kind in WEIGHTS_ONLY:
        shutil.copyfile(run_dir / results.KERAS_BEST_WEIGHTS, tmp)
        suffix = ".weights.h5"
    else:
        shutil.copyfile(run_dir / results.KERAS_MODEL, tmp)
        suffix = ".keras"
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    stem = f"{kind}-{framework}-{arch}-{size}px-{sha[:8]}"
    weights_file = dest / f"{stem}{suffix}"
    tmp.replace(weights_file)
    predict_card = ModelCard.from_config(
        framework,
        cfg,
        metrics.get("calibration"),
        preprocess=metrics["preprocess"],
        source=str(run_dir),
    )
    card = {
        **asdict(predict_card),
        **run_card(run_dir, metrics, cfg),
        "name": f"{framework}/{arch}/{kind}",
        "framework": framework,
        "data": DATA[kind],
        "initialised_from": initialised_from(cfg["model"]["weights"], metrics["pretrained"]),
        "train_images_per_s": metrics.get("train_images_per_s"),
        "machine": metrics.get("machine", platform.platform()),
        "run_dir": str(run_dir),
        "weights_file": weights_file.name,
        "sha256": sha,
        "date": time.strftime("%Y-%m-%d"),
        "licence": f"research and non-commercial use only ({TERMS[kind]}; ImageNet terms when "
        "initialised from it)",
    }
    atomic_write_json(dest / f"{stem}.card.json", card)
    atomic_write_text(dest / f"{stem}.card.md", card_markdown(card))
    return card


def initialised_from(weights: str, pretrained: bool) -> str:
    if not pretrained:
        return "scratch"
    named = {
        "aaf": "AAF-pretrained weights",
        "aaf-appa": "AAF + APPA-pretrained weights",
        "imagenet": "ImageNet",
        "auto": "ImageNet",
    }
    return named.get(weights, weights)


def card_markdown(card: dict) -> str:
    people = card["people"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **Architecture:** {card['arch']} ({card['framework']}), input {card['input_size']} px, "
        f"{card['num_classes']} age classes, {card['loss']} loss",
        f"- **Initialised from:** {card['initialised_from']}",
        f"- **Data:** {card['data'].rstrip('.')}; people train / val / test: {people['train']} / "
        f"{people['val']} / {people['test']}",
        f"- **Preprocessing:** crop {card['crop']['size']} px, margin {card['crop']['margin']}, "
        f"detector {card['crop']['detector']}; cache key `{card['preprocess'][:16]}`",
        f"- **Validation MAE:** {card['val_mae']:.2f} years; **test MAE:** "
        + (
            f"{card['test_mae']:.2f} years"
            if card["test_mae"] is not None
            else "none (no test set)"
        ),
        f"- **Calibration temperature:** {card['temperature']:.3f} (fitted on validation people)",
        f"- **Training:** {card['epochs']} epochs (best {card['best_epoch']}), "
        f"{card['train_minutes']} min on {card['device']}",
        f"- **Versions:** {', '.join(f'{k} {v}' for k, v in card['versions'].items())}",
        f"- **Weights:** `{card['weights_file']}`, sha256 `{card['sha256']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "Never evaluate this model, or one fine-tuned from it, on the people it was trained on"
        + (": it has seen every FG-NET person." if card["name"].endswith("general") else "."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=list(PRESETS), default="aaf")
    parser.add_argument("--framework", choices=TRAINING, default="torch")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--run-dir", help="run folder (default: runs/KIND-FRAMEWORK-MODEL)")
    parser.add_argument("--publish-only", action="store_true", help="publish a finished run")
    parser.add_argument(
        "--preset",
        help=f"training preset (default: {PRESETS['aaf']} for mobilenet_v2, {SCRATCH_PRESET} for "
        f"the other AAF models, {PRESETS['general']} for --kind general)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    args = parser.parse_args(argv)
    import weights

    run_dir = Path(args.run_dir or default_run_dir(args.kind, args.framework, args.model))
    if not args.publish_only:
        resume = ["resume=true"] if (run_dir / results.CONFIG).is_file() else []
        train_args = [
            args.preset or preset_for(args.kind, args.model),
            f"model.name={args.model}",
            f"run_dir={run_dir}",
        ]
        overrides = KIND_OVERRIDES.get(args.kind, []) + args.overrides
        code = _train(args.framework, train_args + resume + overrides)
        if code:
            return code
    if not (run_dir / results.METRICS).is_file():
        print(f"error: {run_dir} has no finished run (metrics.json)", file=sys.stderr)
        return 1
    if args.kind in RELEASES:  # exported with its card into the repository by agezoo.release
        print(f"trained {run_dir}; release it with: python -m agezoo.release {run_dir}")
        return 0
    card = publish(run_dir, args.framework, weights.trained_weights_dir(), args.kind)
    use = (
        f"model.weights={args.kind}"
        if args.kind in WEIGHTS_ONLY
        else "agezoo predict (the default model)"
    )
    print(
        f"published {card['weights_file']} (validation MAE {card['val_mae']:.2f}) in "
        f"{weights.trained_weights_dir()}; use it with {use}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
