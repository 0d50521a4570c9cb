import numpy as np
import pytest

from common import losses


def _numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("lambdas", [(0.2, 0.05), (0.0, 0.0), (1.0, 0.5)])
def test_mean_variance_grad_matches_finite_differences(lambdas):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4, 12))
    ages = np.array([0.0, 3.0, 7.4, 11.0])
    analytic = losses.mean_variance_grad(logits, ages, *lambdas)
    numeric = _numeric_grad(lambda z: losses.mean_variance_loss(z, ages, *lambdas), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_mean_variance_value_by_hand():
    # Two classes, uniform: p = (.5, .5), m = .5, v = .25; age 1 -> CE = ln 2.
    value = losses.mean_variance_loss(np.zeros((1, 2)), np.array([1.0]), 0.2, 0.05)
    assert value == pytest.approx(np.log(2) + 0.2 * 0.5 * 0.25 + 0.05 * 0.25, abs=1e-12)


def test_uniform_logits_fixed_value():
    value = losses.mean_variance_loss(np.zeros((2, 101)), np.array([50.0, 50.0]))
    # CE ln(101) + var of uniform 0..100 = (101^2 - 1)/12 = 850, times 0.05; mean term 0.
    assert value == pytest.approx(np.log(101) + 0.05 * 850.0, abs=1e-9)


def test_decode_expected_age_and_std():
    logits = np.full((1, 5), -1e9)
    logits[0, [1, 3]] = 0.0
    mean, std = losses.decode(logits)
    assert mean[0] == pytest.approx(2.0)
    assert std[0] == pytest.approx(1.0)


def test_ages_to_classes_clips_and_rounds():
    np.testing.assert_array_equal(
        losses.ages_to_classes(np.array([-3, 0.4, 0.6, 99.5, 140]), 101), [0, 0, 1, 100, 100]
    )


@pytest.mark.parametrize(
    "logits, ages, message",
    [(np.zeros(5), np.zeros(5), "logits must be"), (np.zeros((3, 5)), np.zeros(2), "ages must be")],
)
def test_bad_shapes_raise(logits, ages, message):
    with pytest.raises(ValueError, match=message):
        losses.mean_variance_loss(logits, ages)
    with pytest.raises(ValueError, match=message):
        losses.mean_variance_grad(logits, ages)


def test_softmax_and_l2_losses():
    assert losses.softmax_loss(np.zeros((1, 4)), np.array([2.0])) == pytest.approx(np.log(4))
    assert losses.l2_loss(np.array([[1.0], [3.0]]), np.array([2.0, 2.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ"):
        losses.l2_loss(np.zeros(3), np.zeros(2))


def test_loss_table_describes_each_loss_once():
    assert losses.LOSS_NAMES == tuple(losses.LOSSES)
    assert losses.num_outputs("mean_variance", 11) == 11
    assert losses.num_outputs("l2", 11) == 1
    assert losses.loss_spec("softmax").head_bias(np.array([2.0, 4.0])) is None
    assert losses.loss_spec("l2").head_bias(np.array([2.0, 4.0])) == 3.0
    with pytest.raises(ValueError, match="unknown loss 'focal'; known:"):
        losses.loss_spec("focal")
    age, std = losses.decode_outputs(np.array([[5.0], [7.0]]), "l2")
    assert age.tolist() == [5.0, 7.0] and np.isnan(std).all()


def test_label_distribution_grad_matches_finite_differences():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (4, 12))
    ages = np.array([0.0, 3.0, 7.4, 11.0])
    analytic = losses.mean_variance_grad(logits, ages, 0.2, 0.05, label_sigma=1.5)
    numeric = _numeric_grad(
        lambda z: losses.mean_variance_loss(z, ages, 0.2, 0.05, label_sigma=1.5), logits
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_label_distribution_is_a_gaussian_around_the_age_and_one_hot_at_zero_width():
    q = losses.label_distribution(np.array([20.0, 0.0, 30.4]), 101, sigma=2.0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert q[0].argmax() == 20 and q[0, 18] == pytest.approx(q[0, 22])
    assert q[0, 18] / q[0, 20] == pytest.approx(np.exp(-0.5))
    assert q[1].argmax() == 0 and q[1, 1] < q[1, 0]  # cut at the first class, renormalised
    assert (q[2] @ np.arange(101)) == pytest.approx(30.4, abs=1e-6)  # centred on the exact age
    np.testing.assert_array_equal(
        losses.label_distribution(np.array([20.4, 200.0]), 101, 0.0),
        np.eye(101)[[20, 100]],
    )
    # A very narrow Gaussian is the one-hot target of the paper.
    logits = np.random.default_rng(0).normal(size=(3, 101))
    ages = np.array([3.0, 40.0, 77.0])
    assert losses.mean_variance_loss(logits, ages, label_sigma=0.05) == pytest.approx(
        losses.mean_variance_loss(logits, ages), abs=1e-9
    )


def test_label_sigma_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="0 or more"):
        losses.check_label_sigma("mean_variance", -1.0)
    with pytest.raises(ValueError, match="distribution loss"):
        losses.check_label_sigma("l2", 2.0)
    losses.check_label_sigma("softmax", 2.0)


def test_per_image_widths_and_target_widths():
    from types import SimpleNamespace

    from common.losses import label_distribution, target_widths

    q = label_distribution(np.array([3.0, 40.0]), 101, np.array([0.0, 4.0]))
    assert q[0, 3] == 1.0 and q[0].sum() == 1.0  # no width: one-hot
    assert q[1].sum() == pytest.approx(1.0) and q[1].argmax() == 40 and q[1, 36] > 0.5 * q[1, 40]
    with pytest.raises(ValueError, match="finite and 0 or more"):
        label_distribution(np.array([3.0]), 101, np.array([-1.0]))
    stds = np.array([np.nan, 1.1, 4.0], np.float32)  # AAF (none), APPA child, APPA adult
    cfg = SimpleNamespace(name="mean_variance", label_sigma=0.0, vote_sigma=True)
    np.testing.assert_array_equal(target_widths(stds, cfg), np.array([0.0, 1.1, 4.0], np.float32))
    cfg.label_sigma = 2.0
    assert target_widths(stds, cfg)[0] == 2.0
    cfg.vote_sigma = False
    assert target_widths(stds, cfg) is None
    with pytest.raises(ValueError, match="distribution loss"):
        target_widths(stds, SimpleNamespace(name="l2", label_sigma=0.0, vote_sigma=True))
