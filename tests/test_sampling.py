import numpy as np
import pytest

from common import sampling


def _ages():
    # 900 young faces, 90 middle-aged, 10 old: the skew of face-age data sets.
    return np.array([8.0] * 900 + [45.0] * 90 + [82.0] * 10)


def test_no_balance_is_a_permutation_and_depends_on_seed_and_epoch_only():
    idx = np.arange(100, 1100)
    ages = _ages()
    order = sampling.epoch_order(idx, ages, seed=3, epoch=1, band_balance=0.0)
    np.testing.assert_array_equal(np.sort(order), idx)
    np.testing.assert_array_equal(order, sampling.epoch_order(idx, ages, 3, 1, 0.0))
    assert not np.array_equal(order, sampling.epoch_order(idx, ages, 3, 2, 0.0))


@pytest.mark.parametrize("balance, old_share", [(0.5, 0.0741), (1.0, 1 / 3)])
def test_balance_draws_the_rare_decades_more_often(balance, old_share):
    idx = np.arange(1000)
    ages = _ages()
    # Square root: a decade of n images weighs n / sqrt(n) = sqrt(n): 30 : 9.49 : 3.16.
    weights = sampling.band_weights(ages, balance)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[ages > 70].sum() == pytest.approx(old_share, abs=1e-3)
    draws = np.concatenate([sampling.epoch_order(idx, ages, 0, e, balance) for e in range(20)])
    assert len(draws) == 20 * 1000
    assert np.mean(ages[draws] > 70) == pytest.approx(old_share, rel=0.1)
    assert set(np.unique(draws)) <= set(idx)


def test_bands_and_bad_balance():
    np.testing.assert_array_equal(
        sampling.age_bands(np.array([0, 9.9, 10, 69.5, 70, 101])), [0, 0, 1, 6, 7, 7]
    )
    with pytest.raises(ValueError, match="band_balance"):
        sampling.band_weights(_ages(), 1.5)
