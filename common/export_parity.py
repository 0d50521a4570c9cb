"""Parity checks of an exported model against the model it came from.

An exported model must give the run's logits to float32 rounding. Rounding grows with the size
of the logits, so the bound is relative to the largest of them (at least 1): an absolute 1e-4
failed now and then on a trained model whose logits reach the tens.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

EXPORT_TOLERANCE = 1e-4


def logit_gap(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got − ref| over max(1, max |ref|): how far an exported model's logits stray."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(
        np.abs(np.asarray(got, dtype=np.float64) - ref).max() / max(1.0, np.abs(ref).max())
    )


def images_per_second(forward: Callable, faces: np.ndarray, repeats: int = 3) -> float:
    """Inference speed of ``forward`` on a batch of four copies of ``faces``, after a warm-up."""
    batch = np.concatenate([faces] * 4)
    forward(batch)
    t0 = time.perf_counter()
    for _ in range(repeats):
        forward(batch)
    return round(repeats * len(batch) / (time.perf_counter() - t0), 1)
