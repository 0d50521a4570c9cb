"""Cells a benchmark report derives from the raw outputs other cells kept: each cell with its
test-time flip, and the two frameworks' ensemble, plain and flipped.

A fold result that kept its outputs (``outputs``: the logits of the fold's validation and test
people, plain and mirrored; ``benchmarks.cells.pack_result``) gives:

* ``CELL+flip``: the two passes' outputs averaged, as ``agezoo predict`` does;
* ``ensemble-MODEL-LOSS-WEIGHTS`` and ``ensemble-…+flip``: on every fold that a PyTorch cell and
  its Keras twin (same model, loss and weights) both finished, the log of the mean of their two
  distributions (``common.ensemble.mean_distribution``), so that its age is the mean of theirs.

Each is calibrated on the fold's validation people like a model of its own (a temperature
fitted there), then scored on the fold's test people: the report's tables treat it as any cell.
Nothing here looks at a test person before scoring.
"""

from __future__ import annotations

import numpy as np

from common import results
from common.ensemble import mean_distribution
from common.losses import decode_outputs, loss_spec

FLIP = "+flip"
COPIED = (
    "fold", "fold_hash", "preprocess", "device", "pretrained", "framework", "model", "loss",
    "weights", "train_seconds", "eval_seconds", "train_images_per_s", "eval_images_per_s",
)  # fmt: skip


def _passes(fold: dict, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) outputs of one fold result: plain, or both passes averaged."""
    o = fold["outputs"]
    val, test = np.asarray(o["val"], float), np.asarray(o["test"], float)
    if flip:
        val = results.flip_average(val, o["val_mirrored"])
        test = results.flip_average(test, o["test_mirrored"])
    return val, test


def score(template: dict, cell_id: str, val_out, test_out, **fields) -> dict:
    """A derived fold result from validation and test outputs: calibrated on the validation
    people, scored on the test people of ``template`` (a fold result of the same fold)."""
    loss = template["loss"]
    val_ages = np.asarray(template["outputs"]["val_true_age"], float)
    true = np.asarray(template["predictions"]["true_age"], float)
    calibration = results.calibrate_run(loss, val_out, val_ages, test_out, true)
    pred, std = decode_outputs(test_out, loss, calibration["temperature"] if calibration else 1.0)
    preds = template["predictions"]
    return {
        **{k: template.get(k) for k in COPIED},
        "cell": cell_id,
        "fold_mae": float(np.mean(np.abs(pred - true))),
        "calibration": calibration,
        "predictions": {
            "file": preds["file"],
            "person": preds["person"],
            "true_age": true.tolist(),
            "expected_age": pred.tolist(),
            "std": std.tolist(),
        },
        **fields,
    }


def flipped(cell_id: str, folds: list[dict]) -> list[dict]:
    """The cell's folds with the test-time flip."""
    return [score(f, cell_id + FLIP, *_passes(f, True)) for f in folds]


def ensemble(cell_id: str, a: list[dict], b: list[dict], flip: bool) -> list[dict]:
    """Two cells' distributions averaged on every fold both finished; ``ValueError`` when a
    fold's people differ between the two (results of other folds or other data)."""
    by_fold = {f["fold"]: f for f in b}
    out = []
    for fa in a:
        fb = by_fold.get(fa["fold"])
        if fb is None:
            continue
        same_val = fa["outputs"]["val_true_age"] == fb["outputs"]["val_true_age"]
        if fa["predictions"]["file"] != fb["predictions"]["file"] or not same_val:
            raise ValueError(
                f"fold {fa['fold']}: {fa['cell']} and {fb['cell']} scored other images; "
                "an ensemble needs the same people"
            )
        (va, ta), (vb, tb) = _passes(fa, flip), _passes(fb, flip)
        fields = {
            "framework": "ensemble",
            "train_seconds": fa["train_seconds"] + fb["train_seconds"],
            "eval_seconds": fa.get("eval_seconds", 0) + fb.get("eval_seconds", 0),
            "members": [fa["cell"], fb["cell"]],
        }
        out.append(
            score(
                fa,
                cell_id + (FLIP if flip else ""),
                mean_distribution([va, vb]),
                mean_distribution([ta, tb]),
                **fields,
            )
        )
    return out


def _kept(folds: list[dict]) -> bool:
    return all("outputs" in f for f in folds)


def derived_cells(by_cell: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], list]:
    """(derived cell id -> fold results, [(derived id, the id it is compared with)]) from the
    cells that kept their outputs."""
    cells: dict[str, list[dict]] = {}
    pairs = []
    for cid, folds in sorted(by_cell.items()):
        if _kept(folds):
            cells[cid + FLIP] = flipped(cid, folds)
            pairs.append((cid + FLIP, cid))
    for cid, folds in sorted(by_cell.items()):
        first = folds[0]
        if first["framework"] != "torch" or not loss_spec(first["loss"]).distribution:
            continue
        for weights in (first["weights"], f"{first['weights']}-torch"):
            twin = f"keras-{first['model']}-{first['loss']}-{weights}"
            if twin not in by_cell or not (_kept(folds) and _kept(by_cell[twin])):
                continue
            eid = f"ensemble-{first['model']}-{first['loss']}-{weights}"
            for flip, tag in ((False, ""), (True, FLIP)):
                joined = ensemble(eid, folds, by_cell[twin], flip)
                if joined:
                    cells[eid + tag] = joined
                    pairs += [(eid + tag, cid + tag), (eid + tag, twin + tag)]
    return cells, pairs
