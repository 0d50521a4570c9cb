import numpy as np
import pytest

torch = pytest.importorskip("torch")

from common import losses as ref  # noqa: E402
from torch_impl import losses  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lambdas", [(0.2, 0.05), (0.0, 0.0)])
def test_value_and_gradient_match_numpy_reference(seed, lambdas):
    rng = np.random.default_rng(seed)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = rng.uniform(0, 100, 6).round(1)
    logits = torch.tensor(logits_np, dtype=torch.float64, requires_grad=True)
    value = losses.mean_variance_loss(logits, torch.tensor(ages_np), *lambdas)
    value.backward()
    assert value.item() == pytest.approx(
        ref.mean_variance_loss(logits_np, ages_np, *lambdas), abs=1e-6
    )
    np.testing.assert_allclose(
        logits.grad.numpy(), ref.mean_variance_grad(logits_np, ages_np, *lambdas), atol=1e-6
    )


def test_reductions_and_softmax():
    logits = torch.randn(4, 10, dtype=torch.float64)
    ages = torch.tensor([1.0, 2, 3, 9])
    none = losses.mean_variance_loss(logits, ages, reduction="none")
    assert none.shape == (4,)
    assert torch.allclose(none.sum(), losses.mean_variance_loss(logits, ages, reduction="sum"))
    assert torch.allclose(none.mean(), losses.MeanVarianceLoss()(logits, ages))
    assert losses.softmax_loss(logits, ages).item() == pytest.approx(
        ref.softmax_loss(logits.numpy(), ages.numpy()), abs=1e-9
    )


def test_l2():
    out = torch.tensor([[1.0], [3.0]])
    assert losses.l2_loss(out, torch.tensor([2.0, 2.0])).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one output per image"):
        losses.l2_loss(torch.zeros(2, 3), torch.zeros(2))


@pytest.mark.parametrize(
    "logits, ages, message",
    [
        (torch.zeros(5), torch.zeros(5), "logits must be"),
        (torch.zeros(3, 5), torch.zeros(2), "ages must be"),
    ],
)
def test_bad_shapes(logits, ages, message):
    with pytest.raises(ValueError, match=message):
        losses.mean_variance_loss(logits, ages)


def test_bad_reduction_and_name():
    with pytest.raises(ValueError, match="reduction"):
        losses.mean_variance_loss(torch.zeros(1, 3), torch.zeros(1), reduction="avg")
    with pytest.raises(ValueError, match="unknown loss"):
        losses.make_loss("focal")


@pytest.mark.parametrize("name", list(ref.LOSSES))
def test_every_loss_of_the_table_has_an_implementation_that_matches_its_reference(name):
    spec = ref.LOSSES[name]
    outputs = np.random.default_rng(0).normal(size=(4, spec.outputs(11)))
    ages = np.array([1.0, 3.5, 7.0, 10.0])
    got = losses.make_loss(name)(torch.from_numpy(outputs), torch.from_numpy(ages)).item()
    assert got == pytest.approx(spec.reference(outputs, ages), rel=1e-9)
    assert set(losses.IMPLEMENTATIONS) == set(ref.LOSSES)


@pytest.mark.parametrize("name, lambdas", [("mean_variance", (0.2, 0.05)), ("softmax", (0, 0))])
def test_label_distribution_target_matches_the_reference(name, lambdas):
    rng = np.random.default_rng(3)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = rng.uniform(0, 100, 6).round(1)
    logits = torch.tensor(logits_np, dtype=torch.float64, requires_grad=True)
    value = losses.make_loss(name, *lambdas, label_sigma=2.5)(logits, torch.tensor(ages_np))
    value.backward()
    assert value.item() == pytest.approx(
        ref.mean_variance_loss(logits_np, ages_np, *lambdas, label_sigma=2.5), abs=1e-6
    )
    np.testing.assert_allclose(
        logits.grad.numpy(),
        ref.mean_variance_grad(logits_np, ages_np, *lambdas, label_sigma=2.5),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="distribution loss"):
        losses.make_loss("l2", label_sigma=2.5)


def test_per_image_target_widths_match_the_reference_and_zero_keeps_one_hot():
    rng = np.random.default_rng(4)
    logits_np = rng.normal(0, 3, (6, 101))
    ages_np = np.array([1.0, 5, 30, 60, 2, 90])
    widths = np.array([0.0, 2.5, 0.0, 6.1, 1.2, 0.0])  # APPA vote stds; 0: no spread known
    logits = torch.tensor(logits_np, dtype=torch.float64, requires_grad=True)
    loss = losses.make_loss("mean_variance")
    value = loss(logits, torch.tensor(ages_np), torch.tensor(widths))
    value.backward()
    assert value.item() == pytest.approx(
        ref.mean_variance_loss(logits_np, ages_np, label_sigma=widths), abs=1e-9
    )
    np.testing.assert_allclose(
        logits.grad.numpy(),
        ref.mean_variance_grad(logits_np, ages_np, label_sigma=widths),
        atol=1e-9,
    )
    each = losses.mean_variance_loss(
        logits.detach(), torch.tensor(ages_np), reduction="none", label_sigma=torch.tensor(widths)
    )
    plain = losses.mean_variance_loss(logits.detach(), torch.tensor(ages_np), reduction="none")
    assert torch.equal(each[widths == 0], plain[widths == 0])
    assert (each[widths > 0] != plain[widths > 0]).all()
