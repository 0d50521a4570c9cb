"""Calibrated uncertainty: one temperature that makes the age distribution's spread honest.

A network trained with the Mean-Variance loss is usually overconfident on new people: the true
age falls within ±1 std of the prediction less often than the nominal 68 %. Dividing the logits
by a temperature ``T`` > 1 widens the distribution. The predicted age stays the expectation of
the model's own distribution (``T`` = 1, what training selected on); ``T`` sets only the std and
the intervals. ``T`` is fitted
on the validation people (never the test fold) so that the coverage of ±1 std and of the central
90 % interval are as close as possible to nominal, and then stored with the model.

Intervals treat class ``j`` as the age interval ``[j - ½, j + ½]`` with its probability spread
evenly, so quantiles are continuous.

Example:
    >>> import numpy as np
    >>> logits = np.log(np.eye(101)[[30]] * 0.98 + 0.02 / 101)
    >>> lo, hi = central_interval(logits, 0.9)
    >>> bool(lo[0] < 30 < hi[0])
    True
"""

from __future__ import annotations

import numpy as np

from common.losses import expected_age, softmax

ONE_STD = 0.682689492  # P(|Z| ≤ 1) for a normal distribution
INTERVAL = 0.90
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature`` as float64, checking shapes and the temperature."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    return logits / temperature


def quantiles(logits: np.ndarray, q: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Age quantiles ``(N, len(q))`` of each distribution, classes spread over ±½ year."""
    return _quantiles(softmax(scaled(logits, temperature)), q)


def _quantiles(p: np.ndarray, q) -> np.ndarray:
    cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
    cdf[:, -1] = 1.0
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    rows = np.arange(len(p))[:, None]
    # cdf[:, i - 1] < q <= cdf[:, i] puts the quantile inside class i - 1, i.e. [i - 1.5, i - ½].
    i = np.clip((cdf[:, None, :] < q[None, :, None]).sum(-1), 1, p.shape[1])
    below, above = cdf[rows, i - 1], cdf[rows, i]
    frac = np.where(above > below, (q[None, :] - below) / np.maximum(above - below, 1e-300), 0.0)
    # No age is below 0 or above the last class: the outer half-classes are cut off.
    return np.clip(i - 1.5 + np.clip(frac, 0.0, 1.0), 0.0, p.shape[1] - 1.0)


def central_interval(
    logits: np.ndarray, level: float = INTERVAL, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) ages of the central ``level`` interval, each ``(N,)``."""
    qs = quantiles(logits, np.array([(1 - level) / 2, (1 + level) / 2]), temperature)
    return qs[:, 0], qs[:, 1]


def coverage(logits: np.ndarray, ages: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    """Fractions of true ages within ±1 std of the expectation and within the 90 % interval."""
    z = scaled(logits, temperature)
    ages = np.asarray(ages, dtype=np.float64)
    if ages.shape != (len(z),):
        raise ValueError(f"ages must be ({len(z)},), got {ages.shape}")
    return _coverage(softmax(z), expected_age(logits), ages)


def _coverage(p: np.ndarray, mean: np.ndarray, ages: np.ndarray) -> dict[str, float]:
    j = np.arange(p.shape[1], dtype=np.float64)
    std = np.sqrt(np.maximum(p @ j**2 - (p @ j) ** 2, 0.0))
    lo, hi = _quantiles(p, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2]).T
    return {
        "within_1std": float(np.mean(np.abs(ages - mean) <= std)),
        "within_90": float(np.mean((lo <= ages) & (ages <= hi))),
    }


def reliability(
    logits: np.ndarray, ages: np.ndarray, temperature: float = 1.0, levels=RELIABILITY_LEVELS
) -> dict[str, float]:
    """Observed coverage of the central interval at each nominal level, as ``{level: fraction}``."""
    ages = np.asarray(ages, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    q = np.concatenate([(1 - levels) / 2, (1 + levels) / 2])
    qs = quantiles(logits, q, temperature)
    lo, hi = qs[:, : len(levels)], qs[:, len(levels) :]
    inside = (lo <= ages[:, None]) & (ages[:, None] <= hi)
    return {f"{lv:g}": float(f) for lv, f in zip(levels, inside.mean(0), strict=True)}


def _miss(cov: dict[str, float]) -> float:
    return abs(cov["within_1std"] - ONE_STD) + abs(cov["within_90"] - INTERVAL)


def fit_temperature(
    logits: np.ndarray, ages: np.ndarray, low: float = 0.25, high: float = 8.0, steps: int = 121
) -> float:
    """The temperature in ``[low, high]`` whose coverages on these images are nearest nominal.

    The cost is |±1 std coverage − 68.3 %| + |90 % interval coverage − 90 %|. Coverage is a step
    function of ``T``, so this searches a log-spaced grid; among equally good temperatures it
    keeps the one nearest 1 (the least change to the model).

    Args:
        logits: (N, K) validation logits.
        ages: (N,) their true ages.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) == 0:
        raise ValueError("no validation images to fit a temperature on")
    ages = np.asarray(ages, dtype=np.float64)
    mean = expected_age(logits)
    grid = np.geomspace(low, high, steps)
    cost = np.array([_miss(_coverage(softmax(logits / t), mean, ages)) for t in grid])
    best = np.flatnonzero(cost <= cost.min() + 1e-12)
    return float(grid[best[np.argmin(np.abs(np.log(grid[best])))]])


def calibration_report(
    val_logits: np.ndarray,
    val_ages: np.ndarray,
    test_logits: np.ndarray | None = None,
    test_ages: np.ndarray | None = None,
) -> dict:
    """Fits the temperature on validation and reports coverage before / after on both sets."""
    t = fit_temperature(val_logits, val_ages)
    out = {
        "temperature": t,
        "fitted_on": "validation people",
        "n_val": int(len(val_ages)),
        "val_before": coverage(val_logits, val_ages),
        "val_after": coverage(val_logits, val_ages, t),
    }
    if test_logits is not None and len(test_logits):
        out["n_test"] = int(len(test_ages))
        out["test_before"] = coverage(test_logits, test_ages)
        out["test_after"] = coverage(test_logits, test_ages, t)
        out["test_reliability_before"] = reliability(test_logits, test_ages)
        out["test_reliability_after"] = reliability(test_logits, test_ages, t)
    return out
