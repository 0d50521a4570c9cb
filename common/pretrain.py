"""Age pretraining on All-Age-Faces, published as trained weights with a model card.

Usage: ``make pretrain FRAMEWORK=torch|keras MODEL=mobilenet_v2`` or
``python -m common.pretrain --framework torch --model mobilenet_v2 [key=value ...]``

Trains with the framework's own training loop on the ``pretrain-aaf`` preset (model selection
on AAF validation people, never on FG-NET), then writes into the trained-weights folder of the
cache (``$AGEZOO_CACHE/weights``) the weights file, named with its hash, and its model card as
JSON and Markdown. ``model.weights=aaf`` then loads them, hash-checked, in the same framework
(``weights.aaf_weights``); copies placed in ``$AGEZOO_WEIGHTS_DIR`` are found too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

from common.config import load_config, to_dict
from common.results import atomic_write_json, atomic_write_text

PRESET = "pretrain-aaf"


def _train(framework: str, argv: list[str]) -> int:
    if framework == "torch":
        from torch_impl.train import main
    else:
        from tf_impl.train import main
    return main(argv)


def publish(run_dir: str | Path, framework: str, dest: str | Path) -> dict:
    """Copies a pretraining run's best weights into ``dest`` with their card; returns the card."""
    run_dir, dest = Path(run_dir), Path(dest)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = to_dict(load_config(str(run_dir / "config.yaml")))
    folds = json.loads((run_dir / "folds.json").read_text())["folds"][cfg["fold"]]
    arch, size = cfg["model"]["name"], cfg["data"]["size"]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".aaf-{framework}-{arch}.tmp"
    if framework == "torch":
        import torch

        state = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
        torch.save(state["model"], tmp)
        suffix = ".pt"
    else:
        shutil.copyfile(run_dir / "best.weights.h5", tmp)
        suffix = ".weights.h5"
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    stem = f"aaf-{framework}-{arch}-{size}px-{sha[:8]}"
    weights_file = dest / f"{stem}{suffix}"
    tmp.replace(weights_file)
    test = metrics.get("test", {})
    card = {
        "name": f"{framework}/{arch}/aaf",
        "framework": framework,
        "arch": arch,
        "input_size": cfg["model"]["input_size"] or size,
        "crop": {
            "size": size,
            "margin": cfg["data"]["margin"],
            "detector": cfg["data"]["detector"],
        },
        "loss": cfg["loss"]["name"],
        "num_classes": cfg["data"]["num_classes"],
        "data": "All-Age-Faces (half-resolution copy), deduplicated: byte-identical files kept "
        "once, groups with conflicting ages dropped; official split, val.txt people as test",
        "people": {part: len(folds[part]) for part in ("train", "val", "test")},
        "preprocess": metrics["preprocess"],
        "fold_hash": metrics["fold_hash"],
        "initialised_from": "ImageNet" if metrics["pretrained"] else "scratch",
        "aaf_val_mae": metrics["best_val_mae"],
        "aaf_test_mae": metrics.get("test_mae"),
        "aaf_test_mae_by_decade": test.get("mae_by_decade"),
        "calibration": metrics.get("calibration"),
        "epochs": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"] + 1,
        "train_minutes": round(metrics["train_seconds"] / 60, 1),
        "train_images_per_s": metrics.get("train_images_per_s"),
        "versions": metrics["versions"],
        "machine": metrics.get("machine", platform.platform()),
        "device": metrics["device"],
        "run_dir": str(run_dir),
        "weights_file": weights_file.name,
        "sha256": sha,
        "date": time.strftime("%Y-%m-%d"),
        "licence": "research use only (All-Age-Faces; ImageNet terms when initialised from it)",
    }
    atomic_write_json(dest / f"{stem}.card.json", card)
    atomic_write_text(dest / f"{stem}.card.md", card_markdown(card))
    return card


def card_markdown(card: dict) -> str:
    people = card["people"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **Architecture:** {card['arch']} ({card['framework']}), input {card['input_size']} px, "
        f"{card['num_classes']} age classes, {card['loss']} loss",
        f"- **Initialised from:** {card['initialised_from']}",
        f"- **Data:** {card['data']}; people train / val / test: {people['train']} / "
        f"{people['val']} / {people['test']}",
        f"- **Preprocessing:** crop {card['crop']['size']} px, margin {card['crop']['margin']}, "
        f"detector {card['crop']['detector']}; cache key `{card['preprocess'][:16]}`",
        f"- **AAF validation MAE:** {card['aaf_val_mae']:.2f} years; **AAF test MAE:** "
        f"{card['aaf_test_mae']:.2f} years",
        f"- **Training:** {card['epochs']} epochs (best {card['best_epoch']}), "
        f"{card['train_minutes']} min on {card['device']}",
        f"- **Versions:** {', '.join(f'{k} {v}' for k, v in card['versions'].items())}",
        f"- **Weights:** `{card['weights_file']}`, sha256 `{card['sha256']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "Never evaluate a model fine-tuned from these weights on All-Age-Faces' training people.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["torch", "keras"], default="torch")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--run-dir", help="run folder (default: runs/pretrain-FRAMEWORK-MODEL)")
    parser.add_argument("--publish-only", action="store_true", help="publish a finished run")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    args = parser.parse_args(argv)
    import weights

    run_dir = Path(args.run_dir or f"runs/pretrain-{args.framework}-{args.model}")
    if not args.publish_only:
        resume = ["resume=true"] if (run_dir / "config.yaml").is_file() else []
        train_args = [PRESET, f"model.name={args.model}", f"run_dir={run_dir}", *resume]
        code = _train(args.framework, train_args + args.overrides)
        if code:
            return code
    if not (run_dir / "metrics.json").is_file():
        print(f"error: {run_dir} has no finished run (metrics.json)", file=sys.stderr)
        return 1
    card = publish(run_dir, args.framework, weights.trained_weights_dir())
    print(
        f"published {card['weights_file']} (AAF val MAE {card['aaf_val_mae']:.2f}, test MAE "
        f"{card['aaf_test_mae']:.2f}) in {weights.trained_weights_dir()}; "
        f"use it with model.weights=aaf"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
