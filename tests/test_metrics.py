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
