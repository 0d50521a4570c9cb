"""Age-estimation metrics: MAE, cumulative score, MAE by decade, and their bootstrap intervals."""

from __future__ import annotations

import numpy as np

CS_THRESHOLDS = tuple(range(11))


def _errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and true ages {true.shape} differ in length")
    if pred.size == 0:
        raise ValueError("no predictions to score")
    return np.abs(pred - true)


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error in years."""
    return float(_errors(pred, true).mean())


def cumulative_score(pred: np.ndarray, true: np.ndarray, threshold: float) -> float:
    """CS(θ): fraction of images whose absolute error is at most θ years."""
    return float((_errors(pred, true) <= threshold).mean())


def cs_curve(pred: np.ndarray, true: np.ndarray, thresholds=CS_THRESHOLDS) -> dict[int, float]:
    """CS(θ) for each θ, as ``{θ: fraction}``."""
    err = _errors(pred, true)
    return {int(t): float((err <= t).mean()) for t in thresholds}


def mae_by_decade(
    pred: np.ndarray, true: np.ndarray, last: int | None = None
) -> dict[str, tuple[float, int]]:
    """MAE per decade of the true age, as ``{"0-9": (mae, count), ...}``; empty decades omitted.
    With ``last`` (a multiple of 10), ages from ``last`` on form one band, ``"70+"``."""
    err = _errors(pred, true)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    decade = (np.floor(true) // 10).astype(int)
    if last is not None:
        decade = np.minimum(decade, last // 10)
    out = {}
    for d in np.unique(decade):
        sel = decade == d
        name = f"{last}+" if last is not None and 10 * d == last else f"{10 * d}-{10 * d + 9}"
        out[name] = (float(err[sel].mean()), int(sel.sum()))
    return out


def mae_by_band(pred: np.ndarray, true: np.ndarray, last: int = 70) -> dict[str, tuple[float, int]]:
    """MAE per age band 0-9, 10-19, ..., and ``last``+ as one band (few people are older).

    Example:
        >>> mae_by_band(np.array([5.0, 30.0, 80.0]), np.array([3, 33, 91]))
        {'0-9': (2.0, 1), '30-39': (3.0, 1), '70+': (11.0, 1)}
    """
    return mae_by_decade(pred, true, last)


def band_mean(by_band: dict[str, tuple[float, int]]) -> float:
    """The mean of the bands' MAEs: every age band weighs the same, however many photos."""
    return float(np.mean([mae for mae, _ in by_band.values()])) if by_band else float("nan")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when it is undefined (fewer than 3 values, or a constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def band_intervals(
    pred: np.ndarray,
    true: np.ndarray,
    people,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    last: int = 70,
) -> dict:
    """Percentile bootstrap intervals of the MAE, the mean of the bands and each band's MAE.

    Each resample draws the people with replacement and keeps all the photos of each draw, so a
    person photographed many times counts as one draw, not many. A band that a resample leaves
    empty is left out of that resample's band mean. Returns ``{"mae": [lo, hi], "band_mean":
    [lo, hi], "by_band": {"0-9": [lo, hi], ...}}``.

    Example:
        >>> band_intervals(np.array([4.0, 6.0]), np.array([5, 5]), ["a", "b"])["mae"]
        [1.0, 1.0]
    """
    err = _errors(pred, true)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    people = np.asarray(people).reshape(-1)
    if people.shape != err.shape:
        raise ValueError(f"{len(people)} people for {len(err)} predictions")
    names = list(mae_by_band(pred, true, last))
    band = np.minimum((np.floor(true) // 10).astype(int), last // 10)
    _, cols = np.unique(band, return_inverse=True)  # the columns of ``names``, in their order
    _, person = np.unique(people, return_inverse=True)
    n_people = int(person.max()) + 1
    sums = np.zeros((n_people, len(names)))
    counts = np.zeros((n_people, len(names)))
    np.add.at(sums, (person, cols), err)
    np.add.at(counts, (person, cols), 1.0)
    rng = np.random.default_rng(seed)
    by_band, overall = [], []
    for start in range(0, resamples, 256):  # a block at a time: resamples x people stays small
        rows = min(256, resamples - start)
        draws = rng.integers(0, n_people, size=(rows, n_people))
        weight = np.zeros((rows, n_people))
        np.add.at(weight, (np.repeat(np.arange(rows), n_people), draws.reshape(-1)), 1.0)
        s, c = weight @ sums, weight @ counts
        with np.errstate(invalid="ignore", divide="ignore"):
            by_band.append(s / c)
        overall.append(s.sum(1) / c.sum(1))
    bands = np.concatenate(by_band)
    tail = 100 * (1 - level) / 2

    def interval(values: np.ndarray) -> list[float]:
        lo, hi = np.nanpercentile(values, [tail, 100 - tail])
        return [round(float(lo), 3), round(float(hi), 3)]

    with np.errstate(invalid="ignore"):
        means = np.nanmean(bands, axis=1)
    return {
        "mae": interval(np.concatenate(overall)),
        "band_mean": interval(means),
        "by_band": {name: interval(bands[:, k]) for k, name in enumerate(names)},
    }
