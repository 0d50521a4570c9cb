"""The command-line steps both frameworks' ``train.py`` share: config, data, folds, report."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from common import results
from common.cache import FaceArrays
from common.config import Config, comparable, load_config, to_dict
from common.datasets import dataset_names
from common.detectors import DETECTORS
from common.losses import LOSSES
from common.prepare import build_folds, load_faces
from common.splits import Fold, save_folds


class UsageError(Exception):
    """A bad command line or config; printed without a traceback."""


TRAIN_USAGE = """usage: python -m {module} [PRESET|CONFIG.yaml] [key=value ...]

Trains one fold of the configured protocol and writes a run folder (config, folds, log,
checkpoint, predictions, metrics, calibration).

  PRESET      a file in common/configs/: {presets}
  key=value   overrides, e.g. model.name=resnet34 data.size=112 optim.lr=3e-4
              loss.name={losses} model.weights=auto|imagenet|none|PATH
              data.dataset={datasets} data.detector={detectors}
              resume=true run_dir=runs/...  (continue an interrupted run)
"""


class ResumeError(ValueError):
    """A run that cannot be resumed as asked (other settings, other folds, a damaged
    checkpoint); printed without a traceback, nothing in the run folder touched."""


def check_same_config(saved: dict, cfg, run_dir) -> None:
    """Raises :class:`ResumeError` unless a run folder's saved config (a dict) and ``cfg``
    agree on every setting that changes the result."""
    if comparable(saved) != comparable(to_dict(cfg)):
        raise ResumeError(
            f"{run_dir}: its checkpoint was made with another config; "
            "resume only with the same settings"
        )


class HelpRequested(Exception):
    """``--help`` on a training command line; the caller prints the usage and exits 0."""


def train_usage(module: str) -> str:
    from common.config import training_presets

    return TRAIN_USAGE.format(
        module=module,
        presets=", ".join(training_presets()),
        datasets="|".join(dataset_names()),
        losses="|".join(LOSSES),
        detectors="|".join(DETECTORS),
    )


def parse_cli(argv: list[str]) -> Config:
    """``[PRESET|FILE.yaml] [key=value ...]`` → config."""
    argv = list(argv)
    if any(a in ("-h", "--help") for a in argv):
        raise HelpRequested
    preset = argv.pop(0) if argv and "=" not in argv[0] else None
    try:
        return load_config(preset, argv)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc


def default_run_dir(cfg: Config, framework: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{framework}-{cfg.model.name}-{cfg.loss.name}-{cfg.data.dataset}-{stamp}"
    return Path(cfg.out_dir) / name


@dataclass
class RunPlan:
    cfg: Config
    faces: FaceArrays
    folds: list[Fold]
    fold: Fold
    run_dir: Path


def plan_run(cfg: Config, framework: str, progress: bool = True) -> RunPlan:
    """Resolves the run folder, loads the aligned faces and makes the folds."""
    if cfg.resume and not cfg.run_dir:
        raise UsageError("resume=true needs run_dir=PATH (the run to continue)")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, framework)
    cfg = replace(cfg, run_dir=str(run_dir))
    try:
        faces = load_faces(cfg.data, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    folds = build_folds(cfg.protocol, faces.persons, cfg.data)
    if not 0 <= cfg.fold < len(folds):
        raise UsageError(f"fold={cfg.fold} but the protocol has {len(folds)} folds")
    return RunPlan(cfg, faces, folds, folds[cfg.fold], run_dir)


def write_folds(plan: RunPlan) -> str:
    return save_folds(
        plan.folds,
        plan.run_dir / results.FOLDS,
        meta={"preprocess": plan.faces.key, "dataset": plan.cfg.data.dataset},
    )


def describe(plan: RunPlan) -> str:
    c, f = plan.cfg, plan.fold
    return (
        f"{c.model.name} / {c.loss.name} on {c.data.dataset} ({len(plan.faces)} images, "
        f"{c.data.size} px), fold {f.name}: {len(f.train)} train / {len(f.val)} val / "
        f"{len(f.test)} test people -> {plan.run_dir}"
    )


def report(metrics: dict, model_file: Path, predictions: Path) -> str:
    kind = " (SYNTHETIC data)" if metrics["synthetic"] else ""
    n_test = metrics.get("test", {}).get("n", 0)
    scored = (
        f"test MAE {metrics['test_mae']:.2f} years over {n_test} images{kind}"
        if n_test
        else f"no test people (validation MAE {metrics['best_val_mae']:.2f}){kind}"
    )
    return (
        f"{scored}; pretrained: {metrics['pretrained']}; "
        f"best epoch {metrics['best_epoch'] + 1} of {metrics['epochs_run']}; "
        f"{metrics['train_seconds'] / 60:.1f} min training\n"
        f"model: {model_file}   predictions: {predictions}"
    )


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
