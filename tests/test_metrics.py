import numpy as np
import pytest

from common import metrics


def test_mae_cs_and_decades():
    pred = np.array([1.0, 12.0, 30.0, 45.0])
    true = np.array([2.0, 10.0, 36.0, 45.0])
    assert metrics.mae(pred, true) == pytest.approx((1 + 2 + 6 + 0) / 4)
    assert metrics.cumulative_score(pred, true, 2) == 0.75
    curve = metrics.cs_curve(pred, true)
    assert curve[0] == 0.25 and curve[5] == 0.75 and curve[10] == 1.0
    assert metrics.mae_by_decade(pred, true) == {
        "0-9": (1.0, 1),
        "10-19": (2.0, 1),
        "30-39": (6.0, 1),
        "40-49": (0.0, 1),
    }


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="differ"):
        metrics.mae(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no predictions"):
        metrics.mae(np.zeros(0), np.zeros(0))


def test_correlation_is_nan_when_undefined():
    import math

    assert math.isnan(metrics.correlation([1, 2], [3, 4]))
    assert math.isnan(metrics.correlation([1, 1, 1], [3, 4, 5]))
    assert metrics.correlation([1, 2, 3], [2, 4, 7]) > 0.9


def test_band_intervals_match_a_loop_over_the_same_draws():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 90, 60).astype(float)
    pred = true + rng.normal(0, 4, 60)
    people = rng.integers(0, 25, 60)
    got = metrics.band_intervals(pred, true, people, resamples=300, seed=7)
    # the same draws, one resample at a time, through mae_by_band itself
    ids = np.unique(people)
    draws = np.random.default_rng(7).integers(0, len(ids), size=(300, len(ids)))
    overall, means, bands = [], [], {name: [] for name in metrics.mae_by_band(pred, true)}
    for row in draws:
        pick = np.concatenate([np.flatnonzero(people == ids[k]) for k in row])
        by_band = metrics.mae_by_band(pred[pick], true[pick])
        overall.append(metrics.mae(pred[pick], true[pick]))
        means.append(metrics.band_mean(by_band))
        for name in bands:
            bands[name].append(by_band[name][0] if name in by_band else np.nan)

    def interval(values):
        return pytest.approx(list(np.nanpercentile(values, [2.5, 97.5])), abs=1e-3)

    assert got["mae"] == interval(overall)
    assert got["band_mean"] == interval(means)
    assert got["by_band"] == {name: interval(v) for name, v in bands.items()}


def test_band_intervals_hold_the_estimate_and_narrow_with_more_people():
    rng = np.random.default_rng(0)

    def width(n):
        true = rng.uniform(0, 9.9, n)
        pred = true + rng.normal(0, 3, n)
        got = metrics.band_intervals(pred, true, np.arange(n))["by_band"]["0-9"]
        assert got[0] < metrics.mae(pred, true) < got[1]
        return got[1] - got[0]

    assert 1.5 < width(100) / width(1600) < 6  # about 4, as 1 / sqrt(n)
    # a person's many photos are one draw: ten copies of each photo do not narrow the interval
    true = rng.uniform(0, 9.9, 50)
    pred = true + rng.normal(0, 3, 50)
    one = metrics.band_intervals(pred, true, np.arange(50))["mae"]
    ten = metrics.band_intervals(np.repeat(pred, 10), np.repeat(true, 10), np.repeat(np.arange(50), 10))
    assert ten["mae"] == pytest.approx(one, abs=0.05)
    with pytest.raises(ValueError, match="people"):
        metrics.band_intervals(pred, true, np.arange(49))
