"""One run-folder layout and result schema for both frameworks, and the tail of every fold.

A run folder holds ``config.yaml``, ``folds.json``, ``log.csv``, the framework's checkpoint,
``predictions.csv`` (file, person, true age, expected age, std) and ``metrics.json``. Every file
is written atomically (temporary file + rename), so an interrupted run never leaves half a file.
The file names are the constants below; nothing else spells them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import metrics
from common.calibration import calibration_report
from common.losses import decode_outputs, loss_spec

SCHEMA_VERSION = 1

CONFIG = "config.yaml"
FOLDS = "folds.json"
LOG = "log.csv"
PREDICTIONS = "predictions.csv"
OUTPUTS = "outputs.npz"  # raw outputs of the validation and test people, plain and mirrored
METRICS = "metrics.json"
CALIBRATION = "calibration.json"  # Keras runs; a PyTorch run keeps it inside its checkpoint
BEST_EPOCH = "best.json"  # Keras runs: the best epoch so far, for a resumed run
TORCH_BEST = "best.pt"  # the chosen epoch's checkpoint, with config and calibration
TORCH_LAST = "last.pt"  # the latest epoch's checkpoint, to resume from
KERAS_MODEL = "model.keras"  # the chosen epoch's whole model
KERAS_BEST_WEIGHTS = "best.weights.h5"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


CHECKSUM = "_crc32"


class CorruptFileError(ValueError):
    """A file that is unreadable, cut short or changed since it was written; names the file."""


def _crc(data) -> int:
    """Of the content as it reads back (integer keys become strings, tuples lists)."""
    again = json.loads(json.dumps(data, default=_jsonable))
    text = json.dumps(again, sort_keys=True)
    return zlib.crc32(text.encode(errors="surrogateescape")) & 0xFFFFFFFF


def write_checked_json(path: str | Path, data: dict) -> Path:
    """:func:`atomic_write_json` with a CRC-32 of the content inside (``_crc32``), so that
    :func:`read_checked_json` sees a changed byte that leaves the JSON valid."""
    data = {k: v for k, v in data.items() if k != CHECKSUM}
    return atomic_write_json(path, {**data, CHECKSUM: _crc(data)})


def read_checked_json(path: str | Path) -> dict:
    """The content of a :func:`write_checked_json` file; :class:`CorruptFileError` naming the
    file when it does not parse or its checksum differs (files without one are taken as they
    are: written before checksums)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(errors="surrogateescape"))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: not a JSON object")
    crc = data.pop(CHECKSUM, None)
    if crc is not None and crc != _crc(data):
        raise CorruptFileError(f"{path}: changed since it was written (checksum differs)")
    return data


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def prediction_metrics(pred: np.ndarray, true: np.ndarray, std: np.ndarray) -> dict:
    """MAE, CS(0..10), MAE by decade and the calibration of the predicted std."""
    err = np.abs(np.asarray(pred, float) - np.asarray(true, float))
    out = {
        "n": int(len(err)),
        "mae": metrics.mae(pred, true),
        "cs": metrics.cs_curve(pred, true),
        "mae_by_decade": metrics.mae_by_decade(pred, true),
    }
    std = np.asarray(std, float)
    if np.isfinite(std).all():
        out["mean_std"] = float(std.mean())
        out["std_error_corr"] = metrics.correlation(std, err)
    return out


def validation_metrics(val_outputs, val_ages, loss_name: str, temperature: float = 1.0) -> dict:
    """The validation people's figures after calibration: those of ``prediction_metrics``, MAE
    by age band (0-9 ... 70+) and their mean, each band weighing the same."""
    pred, std = decode_outputs(val_outputs, loss_name, temperature)
    out = prediction_metrics(pred, val_ages, std)
    by_band = metrics.mae_by_band(pred, val_ages)
    out["mae_by_band"] = by_band
    out["band_mean"] = metrics.band_mean(by_band)
    return out


def calibrate_run(
    loss_name: str, val_outputs, val_ages, test_outputs=None, test_ages=None
) -> dict | None:
    """The calibration temperature fitted on validation people, with coverage before / after.

    ``None`` for the L2 loss, which predicts no distribution.
    """
    if not loss_spec(loss_name).distribution or len(val_outputs) == 0:
        return None
    return calibration_report(val_outputs, val_ages, test_outputs, test_ages)


def write_predictions(path: str | Path, names, persons, true, pred, std) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "person", "true_age", "expected_age", "std"])
    for row in zip(names, persons, true, pred, std, strict=True):
        writer.writerow(
            [row[0], row[1], f"{float(row[2]):g}", f"{float(row[3]):.4f}", f"{float(row[4]):.4f}"]
        )
    return atomic_write_text(path, buf.getvalue())


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "file": np.array([r["file"] for r in rows], dtype=str),
        "person": np.array([r["person"] for r in rows], dtype=str),
        "true_age": np.array([float(r["true_age"]) for r in rows]),
        "expected_age": np.array([float(r["expected_age"]) for r in rows]),
        "std": np.array([float(r["std"]) for r in rows]),
    }


def environment(framework: str, versions: dict[str, str], device: str) -> dict:
    return {
        "framework": framework,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, **versions},
        "device": device,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


class CsvLog:
    """Appends one row per epoch; rewrites the file atomically so a crash never truncates it."""

    def __init__(self, path: str | Path, keep: bool = False):
        self.path = Path(path)
        self.rows: list[dict] = []
        if keep and self.path.is_file():
            with open(self.path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def append(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def truncate(self, epochs: int) -> None:
        """Keeps the rows of the first ``epochs`` epochs (after resuming from a checkpoint)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) < epochs]

    def elapsed(self) -> float:
        """Seconds of training the kept rows took (their last ``elapsed_seconds``; 0 if none), so
        that a resumed run's time counts the processes before it."""
        return float(self.rows[-1].get("elapsed_seconds") or 0.0) if self.rows else 0.0


def run_metrics(
    *,
    framework: str,
    versions: dict,
    device: str,
    cfg: dict,
    fold,
    fold_hash: str,
    preprocess: str,
    pretrained: bool,
    input_size: int,
    log_rows: list[dict],
    best: dict,
    train_seconds: float,
) -> dict:
    """The result schema both frameworks write to ``metrics.json`` (test figures added later)."""
    speeds = [float(r["train_images_per_s"]) for r in log_rows if r.get("train_images_per_s")]
    return {
        "schema": SCHEMA_VERSION,
        "framework": framework,
        "model": cfg["model"]["name"],
        "loss": cfg["loss"]["name"],
        "dataset": cfg["data"]["dataset"],
        "synthetic": cfg["data"]["dataset"] == "synthetic",
        "fold": fold.name,
        "fold_hash": fold_hash,
        "preprocess": preprocess,
        "pretrained": bool(pretrained),
        "input_size": input_size,
        "epochs_run": len(log_rows),
        "best_epoch": best["epoch"],
        "best_val_mae": best["val_mae"],
        "train_seconds": train_seconds,
        "train_images_per_s": float(np.median(speeds)) if speeds else None,
        **environment(framework, versions, device),
        "config": cfg,
    }


def finish_run(
    run_dir: str | Path,
    metrics: dict,
    faces,
    idx,
    pred,
    std,
    eval_seconds: float,
    write: bool = True,
) -> dict:
    """Adds the test figures, writes ``predictions.csv`` and ``metrics.json``; returns metrics."""
    run_dir = Path(run_dir)
    metrics["eval_seconds"] = eval_seconds
    metrics["eval_images_per_s"] = len(idx) / eval_seconds if eval_seconds > 0 else None
    if len(idx):
        metrics["test"] = prediction_metrics(pred, faces.ages[idx], std)
        metrics["test_mae"] = metrics["test"]["mae"]
        if write:
            write_predictions(
                run_dir / PREDICTIONS,
                faces.names[idx],
                faces.persons[idx],
                faces.ages[idx],
                pred,
                std,
            )
    if write:
        atomic_write_json(run_dir / METRICS, metrics)
    return metrics


def evaluate_fold(
    outputs: Callable[[np.ndarray], np.ndarray],
    faces,
    parts: dict[str, np.ndarray],
    loss_name: str,
    metrics: dict,
    run_dir: str | Path,
    write: bool = True,
    keep_calibration: Callable[[dict | None], None] | None = None,
    mirrored: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The tail of every fold, in both frameworks and the frozen benchmark alike.

    The chosen weights' test outputs (timed), the temperature fitted on the validation people,
    decoding, the test figures; writes ``predictions.csv`` and ``metrics.json`` when ``write``.

    Args:
        outputs: image indices → raw network outputs, (N, K) or (N, 1): the framework's forward
            pass in evaluation mode, the only part a framework supplies.
        faces: the ``FaceArrays`` the indices point into.
        parts: the fold's ``train`` / ``val`` / ``test`` indices.
        loss_name: a ``common.losses.LOSSES`` name.
        metrics: the run's metrics so far (``run_metrics``); completed in place.
        keep_calibration: stores the calibration with the model (checkpoint, file), called
            before ``metrics.json`` is written, which marks the run finished.
        mirrored: as ``outputs``, of the mirrored images. With it, ``metrics["flip"]`` holds the
            test-time flip's figures (outputs of both passes averaged, as ``agezoo predict``
            does; its own temperature, fitted on the validation people), and ``outputs.npz``
            the raw outputs of both passes, which a later ensemble of runs is made from.

    Returns:
        The metrics (with ``calibration``) and the test predictions (the columns of
        ``predictions.csv``, unrounded).
    """
    test, val = parts["test"], parts["val"]
    t0 = time.perf_counter()
    test_out = outputs(test)
    eval_seconds = time.perf_counter() - t0
    val_out = outputs(val)
    calibration = calibrate_run(loss_name, val_out, faces.ages[val], test_out, faces.ages[test])
    temperature = calibration["temperature"] if calibration else 1.0
    pred, std = decode_outputs(test_out, loss_name, temperature) if len(test) else (None, None)
    metrics["calibration"] = calibration
    if len(val):  # what model and recipe choices may look at: the validation people's figures
        metrics["val"] = validation_metrics(val_out, faces.ages[val], loss_name, temperature)
    if mirrored is not None:
        val_m, test_m = mirrored(val), mirrored(test)
        metrics["flip"] = flip_metrics(
            flip_average(val_out, val_m), faces.ages[val],
            flip_average(test_out, test_m), faces.ages[test], loss_name,
        )  # fmt: skip
        if write:
            atomic_write_npz(
                Path(run_dir) / OUTPUTS, val_idx=val, test_idx=test,
                val=val_out, val_mirrored=val_m, test=test_out, test_mirrored=test_m,
            )  # fmt: skip
    if keep_calibration is not None:
        keep_calibration(calibration)
    metrics = finish_run(run_dir, metrics, faces, test, pred, std, eval_seconds, write)
    preds = {
        "file": faces.names[test],
        "person": faces.persons[test],
        "true_age": faces.ages[test].astype(float),
        "expected_age": pred,
        "std": std,
    }
    return metrics, preds


def flip_average(plain, mirrored) -> np.ndarray:
    """The test-time flip: the outputs of a pass over the images and of one over their mirror
    images, averaged (as ``agezoo predict`` does)."""
    return (np.asarray(plain, float) + np.asarray(mirrored, float)) / 2


def flip_metrics(val_out, val_ages, test_out, test_ages, loss_name: str) -> dict:
    """The test-time flip's figures from the two passes' averaged outputs: calibrated on the
    validation people like a model of its own, then scored on them and on the test people."""
    calibration = calibrate_run(loss_name, val_out, val_ages, test_out, test_ages)
    t = calibration["temperature"] if calibration else 1.0
    out: dict = {"calibration": calibration}
    if len(val_ages):
        out["val"] = validation_metrics(val_out, val_ages, loss_name, t)
    if len(test_ages):
        pred, std = decode_outputs(test_out, loss_name, t)
        out["test"] = prediction_metrics(pred, test_ages, std)
        out["test_mae"] = out["test"]["mae"]
    return out


def atomic_write_npz(path: str | Path, **arrays) -> Path:
    """Arrays to ``path`` (.npz) through a temporary file, so a crash never leaves half a file."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())
