"""Test-time flip: a trained model's MAE and calibration on its own validation and test people,
with and without averaging each face's outputs with those of its mirror image.

It goes through ``agezoo predict``'s own path (``Predictor.outputs`` with ``flip``), on the
aligned faces of the run's data set and the people of the run's fold (its ``folds.json``): the
validation people decide whether the flip is worth its time, the test people confirm. The
calibration temperature is the card's, fitted at training time on unflipped outputs; the file
also records the temperature the flipped validation outputs would fit, and what it gives.

Usage: python -m benchmarks.flip RUN_DIR [RUN_DIR ...] [--out FILE]
(run folders of ``make pretrain`` / ``make train-*``: ``config.yaml``, ``folds.json`` and
``best.pt`` or ``model.keras``). Writes benchmarks/results/flip.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from common import results
from common.calibration import coverage, fit_temperature
from common.config import load_config
from common.losses import decode_outputs, loss_spec
from common.predictor import Predictor
from common.prepare import load_faces
from common.splits import load_folds

OUT = Path(__file__).parent / "results" / "flip.json"


def _scores(predictor: Predictor, outputs: np.ndarray, ages: np.ndarray, t: float) -> dict:
    card = predictor.card
    age, _ = decode_outputs(outputs, card.loss, t)
    row = {"mae": float(np.mean(np.abs(age - ages)))}
    if loss_spec(card.loss).distribution:
        row.update(coverage(outputs, ages, t))
    return row


def measure(run_dir: str | Path, device: str = "cpu") -> dict:
    """Plain vs flipped outputs of one run on its validation and test people."""
    run_dir = Path(run_dir)
    for name in (results.CONFIG, results.FOLDS):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir}: no {name} (not a training run folder)")
    cfg = load_config(str(run_dir / results.CONFIG))
    folds, fold_hash, _ = load_folds(run_dir / results.FOLDS)
    fold = folds[cfg.fold]
    faces = load_faces(cfg.data, progress=False)
    predictor = load_predictor(run_dir, device)
    t = predictor.card.temperature
    row: dict = {
        "run": str(run_dir),
        "framework": predictor.card.framework,
        "model": cfg.model.name,
        "loss": cfg.loss.name,
        "dataset": cfg.data.dataset,
        "size": cfg.data.size,
        "fold": fold.name,
        "fold_hash": fold_hash,
        "temperature": t,
    }
    outputs, true_ages = {}, {}
    for part in ("val", "test"):
        idx = np.flatnonzero(np.isin(faces.persons, list(getattr(fold, part))))
        if not len(idx):
            raise ValueError(f"{run_dir}: fold {fold.name} has no {part} images")
        images, ages = faces.images[idx], faces.ages[idx].astype(np.float64)
        true_ages[part] = ages
        entry: dict = {"images": len(idx)}
        for flip in (False, True):
            predictor.flip = flip
            t0 = time.perf_counter()
            out = predictor.outputs(images)
            seconds = time.perf_counter() - t0
            outputs[part, flip] = out
            key = "flip" if flip else "plain"
            entry[key] = {**_scores(predictor, out, ages, t), "images_per_s": len(idx) / seconds}
        entry["mae_change"] = entry["flip"]["mae"] - entry["plain"]["mae"]
        row[part] = entry
    if loss_spec(predictor.card.loss).distribution:
        # the temperature the flipped validation outputs would fit, and its test coverage
        t_flip = fit_temperature(outputs["val", True], true_ages["val"])
        row["refit"] = {
            "temperature": t_flip,
            "test": coverage(outputs["test", True], true_ages["test"], t_flip),
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        try:
            row = measure(run, args.device)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        rows.append(row)
        v, te = row["val"], row["test"]
        print(
            f"{run}: validation MAE {v['plain']['mae']:.3f} -> {v['flip']['mae']:.3f} "
            f"({v['mae_change']:+.3f}), test {te['plain']['mae']:.3f} -> "
            f"{te['flip']['mae']:.3f} ({te['mae_change']:+.3f})"
        )
    framework = "+".join(sorted({r["framework"] for r in rows}))
    results.atomic_write_json(
        args.out, {**results.environment(framework, {}, args.device), "runs": rows}
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
