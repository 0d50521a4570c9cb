"""A benchmark cell (framework × model × loss × weights) and the one result it writes per fold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    framework: str  # torch | keras
    model: str
    loss: str
    weights: str

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.model}-{self.loss}-{self.weights}"


def pack_result(cell: Cell, fold, metrics: dict, preds: dict) -> dict:
    """One (cell, fold) result: the run's metrics plus its per-image predictions."""
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
    }
