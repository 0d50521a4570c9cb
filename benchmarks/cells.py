"""A benchmark cell (framework × model × loss × weights) and the one result it writes per fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cell:
    framework: str  # torch | keras
    model: str
    loss: str
    weights: str

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.model}-{self.loss}-{self.weights}"


def pack_result(cell: Cell, fold, metrics: dict, preds: dict, outputs=None) -> dict:
    """One (cell, fold) result: the run's metrics plus its per-image predictions; with
    ``outputs`` (a run's ``outputs.npz``), the raw outputs of its validation and test people,
    plain and mirrored, from which the report derives the flip and the frameworks' ensemble."""
    extra = {}
    if outputs is not None:
        extra["outputs"] = {
            k: np.round(outputs[k], 3).tolist()
            for k in ("val", "val_mirrored", "test", "test_mirrored")
        }
        extra["outputs"]["val_true_age"] = outputs["val_true_age"].tolist()
    return {
        "cell": cell.id,
        "framework": cell.framework,
        "model": cell.model,
        "loss": cell.loss,
        "weights": cell.weights,
        "fold": fold.name,
        "fold_mae": metrics.get("test_mae"),
        **{k: v for k, v in metrics.items() if k not in ("framework", "model", "loss", "fold")},
        "predictions": {k: v.tolist() for k, v in preds.items()},
        **extra,
    }
