import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from common import losses as ref  # noqa: E402
from tf_impl import losses  # noqa: E402


def _value_and_grad(loss_fn, logits_np, ages_np):
    logits = tf.Variable(logits_np, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = loss_fn(logits, tf.constant(ages_np, tf.float64))
    return float(value), tape.gradient(value, logits)


def check_against_reference(loss_fn, lambdas, seed=0):
    """Asserts value within 1e-6 and gradient w.r.t. the logits within 1e-5 of the reference."""
    rng = np.random.default_rng(seed)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = rng.uniform(0, 100, 6).round(1)
    value, grad = _value_and_grad(loss_fn, logits_np, ages_np)
    assert value == pytest.approx(ref.mean_variance_loss(logits_np, ages_np, *lambdas), abs=1e-6)
    assert grad is not None, "no gradient reaches the logits"
    np.testing.assert_allclose(
        grad.numpy(), ref.mean_variance_grad(logits_np, ages_np, *lambdas), atol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lambdas", [(0.2, 0.05), (0.0, 0.0), (1.0, 0.5)])
def test_value_and_gradient_match_numpy_reference(seed, lambdas):
    check_against_reference(lambda z, y: losses.mean_variance_loss(z, y, *lambdas), lambdas, seed)


def _constant_terms_loss(logits, ages):
    """The seed project's bug: mean and variance terms built from .numpy() constants."""
    p = tf.nn.softmax(logits).numpy()
    j = np.arange(p.shape[1])
    m = p @ j
    v = p @ j**2 - m**2
    ce = losses.softmax_loss(logits, ages, reduction="none")
    y = ages.numpy()
    return tf.reduce_mean(ce + 0.2 * 0.5 * tf.constant((m - y) ** 2) + 0.05 * tf.constant(v))


def test_the_check_catches_terms_that_do_not_reach_the_gradient():
    with pytest.raises(AssertionError):
        check_against_reference(_constant_terms_loss, (0.2, 0.05))


def test_keras_loss_wrappers():
    logits = np.random.default_rng(0).normal(size=(4, 11))
    ages = np.array([1.0, 2.0, 3.0, 10.0])
    expected = ref.mean_variance_loss(logits, ages)
    assert float(losses.MeanVarianceLoss()(ages[:, None], logits)) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(losses.SoftmaxLoss()(ages, logits)) == pytest.approx(
        ref.softmax_loss(logits, ages), rel=1e-5
    )
    out = np.array([[1.0], [3.0]])
    assert float(losses.L2Loss()(np.array([2.0, 2.0]), out)) == pytest.approx(1.0)
    restored = losses.MeanVarianceLoss.from_config(losses.MeanVarianceLoss(0.3, 0.1).get_config())
    assert (restored.lambda_mean, restored.lambda_var) == (0.3, 0.1)


def test_reductions():
    logits = np.random.default_rng(0).normal(size=(3, 7))
    ages = np.array([1.0, 2.0, 6.0])
    none = np.asarray(losses.mean_variance_loss(logits, ages, reduction="none"))
    assert none.shape == (3,)
    assert float(losses.mean_variance_loss(logits, ages, reduction="sum")) == pytest.approx(
        none.sum(), rel=1e-6
    )


@pytest.mark.parametrize(
    "logits, ages, message",
    [(np.zeros(5), np.zeros(5), "logits must be"), (np.zeros((3, 5)), np.zeros(2), "ages must be")],
)
def test_bad_shapes(logits, ages, message):
    with pytest.raises(ValueError, match=message):
        losses.mean_variance_loss(logits, ages)


def test_bad_reduction_and_names():
    with pytest.raises(ValueError, match="reduction"):
        losses.mean_variance_loss(np.zeros((1, 3)), np.zeros(1), reduction="avg")
    with pytest.raises(ValueError, match="one output per image"):
        losses.l2_loss(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.make_loss("focal")


@pytest.mark.parametrize("name", list(ref.LOSSES))
def test_every_loss_of_the_table_has_an_implementation_that_matches_its_reference(name):
    spec = ref.LOSSES[name]
    outputs = np.random.default_rng(0).normal(size=(4, spec.outputs(11))).astype("float32")
    ages = np.array([1.0, 3.5, 7.0, 10.0], "float32")
    got = float(losses.make_loss(name)(ages, outputs))
    assert got == pytest.approx(spec.reference(outputs, ages), rel=1e-4)
    assert set(losses.IMPLEMENTATIONS) == set(ref.LOSSES)


def test_label_distribution_target_matches_the_reference():
    lambdas = (0.2, 0.05)
    rng = np.random.default_rng(3)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = rng.uniform(0, 100, 6).round(1)
    value, grad = _value_and_grad(
        lambda z, y: losses.mean_variance_loss(z, y, *lambdas, label_sigma=2.5), logits_np, ages_np
    )
    assert value == pytest.approx(
        ref.mean_variance_loss(logits_np, ages_np, *lambdas, label_sigma=2.5), abs=1e-6
    )
    np.testing.assert_allclose(
        grad.numpy(),
        ref.mean_variance_grad(logits_np, ages_np, *lambdas, label_sigma=2.5),
        atol=1e-5,
    )
    wrapped = losses.make_loss("mean_variance", *lambdas, label_sigma=2.5)
    assert wrapped.get_config()["label_sigma"] == 2.5
    assert float(wrapped(ages_np[:, None], logits_np)) == pytest.approx(value, rel=1e-5)
    soft = losses.make_loss("softmax", label_sigma=2.5)
    assert type(soft).from_config(soft.get_config()).label_sigma == 2.5
    assert float(soft(ages_np, logits_np)) == pytest.approx(
        ref.mean_variance_loss(logits_np, ages_np, 0, 0, label_sigma=2.5), rel=1e-5
    )


def test_per_image_target_widths_match_the_reference():
    rng = np.random.default_rng(4)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = np.array([1.0, 5, 30, 60, 2, 90])
    widths = np.array([0.0, 2.5, 0.0, 6.1, 1.2, 0.0])  # APPA vote stds; 0: no spread known
    value, grad = _value_and_grad(
        lambda z, y: losses.mean_variance_loss(z, y, label_sigma=widths), logits_np, ages_np
    )
    assert value == pytest.approx(ref.mean_variance_loss(logits_np, ages_np, label_sigma=widths))
    np.testing.assert_allclose(
        grad.numpy(), ref.mean_variance_grad(logits_np, ages_np, label_sigma=widths), atol=1e-5
    )
    # as Keras hands them over: (N, 2) rows of age and width
    rows = np.stack([ages_np, widths], axis=1)
    assert float(losses.make_loss("mean_variance")(rows, logits_np)) == pytest.approx(value)
    plain = float(losses.make_loss("mean_variance")(ages_np, logits_np))
    assert plain == pytest.approx(ref.mean_variance_loss(logits_np, ages_np), rel=1e-6)
