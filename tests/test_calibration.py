import numpy as np
import pytest

from common import calibration
from common.losses import decode_outputs


def _gaussian_logits(centres, sigma, k=101):
    j = np.arange(k)
    return -((j[None, :] - centres[:, None]) ** 2) / (2 * sigma**2)


@pytest.fixture
def overconfident():
    """True ages drawn from N(c, 5²) distributions; the model's logits are twice too sharp."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(15, 60, 4000)
    truth = _gaussian_logits(centres, 5.0)
    p = np.exp(truth - truth.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ages = np.array([rng.choice(101, p=row) for row in p]).astype(float)
    return truth * 2.0, ages


def test_fit_recovers_a_known_temperature(overconfident):
    logits, ages = overconfident
    before = calibration.coverage(logits, ages)
    assert before["within_1std"] < 0.55 and before["within_90"] < 0.8  # overconfident
    t = calibration.fit_temperature(logits, ages)
    assert t == pytest.approx(2.0, rel=0.1)
    after = calibration.coverage(logits, ages, t)
    assert after["within_1std"] == pytest.approx(calibration.ONE_STD, abs=0.03)
    assert after["within_90"] == pytest.approx(0.90, abs=0.03)


def test_calibrated_model_keeps_temperature_near_one():
    rng = np.random.default_rng(1)
    centres = rng.uniform(15, 60, 3000)
    logits = _gaussian_logits(centres, 4.0)
    ages = np.rint(centres + rng.normal(0, 4.0, len(centres)))
    assert calibration.fit_temperature(logits, ages) == pytest.approx(1.0, rel=0.1)


def test_temperature_changes_std_not_age(overconfident):
    logits, _ = overconfident
    age1, std1 = decode_outputs(logits[:5], "mean_variance")
    age2, std2 = decode_outputs(logits[:5], "mean_variance", temperature=2.0)
    np.testing.assert_array_equal(age1, age2)
    assert (std2 > std1 * 1.3).all()


def test_interval_and_reliability():
    logits = np.log(np.full((1, 101), 1e-12))
    logits[0, 40] = 0.0  # all mass on age 40: the interval is 40 ± ½ year spread evenly
    lo, hi = calibration.central_interval(logits, 0.9)
    assert lo[0] == pytest.approx(39.55, abs=1e-6) and hi[0] == pytest.approx(40.45, abs=1e-6)
    rel = calibration.reliability(logits, np.array([40.0]))
    assert set(rel) == {f"{v:g}" for v in calibration.RELIABILITY_LEVELS}
    assert all(v == 1.0 for v in rel.values())


def test_interval_never_leaves_the_age_range():
    """A newborn's interval starts at 0, never at the -0.5 where class 0's half-year begins."""
    logits = np.log(np.full((2, 101), 1e-12))
    logits[0, 0] = 0.0
    logits[1, 100] = 0.0
    lo, hi = calibration.central_interval(logits, 0.9)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(0.45, abs=1e-6)
    assert lo[1] == pytest.approx(99.55, abs=1e-6) and hi[1] == 100.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="temperature"):
        calibration.coverage(np.zeros((2, 5)), np.zeros(2), temperature=0)
    with pytest.raises(ValueError, match=r"logits must be \(N, K\)"):
        calibration.quantiles(np.zeros(5), [0.5])
    with pytest.raises(ValueError, match="no validation images"):
        calibration.fit_temperature(np.zeros((0, 5)), np.zeros(0))
