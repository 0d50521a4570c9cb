"""Age losses in PyTorch: pure functions of (outputs, ages) plus thin module wrappers.

Tested against the numpy reference in ``common.losses`` (value and gradient, float64).

Example:
    >>> logits = torch.zeros(2, 101, requires_grad=True)
    >>> loss = mean_variance_loss(logits, torch.tensor([50.0, 50.0]))
    >>> round(loss.item(), 4)
    47.1151
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.losses import LAMBDA_MEAN, LAMBDA_VAR, check_label_sigma

REDUCTIONS = ("mean", "sum", "none")


def _check(outputs: torch.Tensor, ages: torch.Tensor, reduction: str, two_d: bool = True):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if two_d and outputs.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(outputs.shape)}")
    if ages.shape != (outputs.shape[0],):
        raise ValueError(
            f"ages must be (N,) with N = {outputs.shape[0]} to match the outputs, "
            f"got shape {tuple(ages.shape)}"
        )


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def mean_variance_loss(
    logits: torch.Tensor,
    ages: torch.Tensor,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    reduction: str = "mean",
    label_sigma: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Softmax CE + λ1·½(m − y)² + λ2·Σ p_j (j − m)² (Pan et al., CVPR 2018).

    Args:
        logits: (N, K) scores over ages 0..K-1.
        ages: (N,) true ages in years; CE uses the rounded age clipped into 0..K-1.
        reduction: ``mean`` over the batch (the paper), ``sum`` or ``none``.
        label_sigma: > 0: CE against a Gaussian of this std around the age instead
            (``common.losses.label_distribution``); an (N,) tensor gives each image its own
            width (0: that image's one-hot target).
    """
    _check(logits, ages, reduction)
    k = logits.shape[1]
    logp = F.log_softmax(logits, dim=1)
    p = logp.exp()
    j = torch.arange(k, dtype=logits.dtype, device=logits.device)
    y = ages.to(logits.dtype).clamp(0, k - 1)
    m = p @ j
    v = p @ (j**2) - m**2
    ce = -logp.gather(1, y.round().long()[:, None])[:, 0]  # the one-hot target
    if isinstance(label_sigma, torch.Tensor) or label_sigma > 0:
        sigma = torch.as_tensor(label_sigma, dtype=logits.dtype, device=logits.device)
        sigma = sigma.expand(len(y))
        width = torch.where(sigma > 0, sigma, torch.ones_like(sigma))[:, None]
        q = torch.softmax(-0.5 * ((j[None, :] - y[:, None]) / width) ** 2, dim=1)
        ce = torch.where(sigma > 0, -(q * logp).sum(dim=1), ce)
    return _reduce(ce + lambda_mean * 0.5 * (m - y) ** 2 + lambda_var * v, reduction)


def softmax_loss(
    logits: torch.Tensor,
    ages: torch.Tensor,
    reduction: str = "mean",
    label_sigma: float | torch.Tensor = 0.0,
):
    """Cross-entropy on the rounded age class only; the prediction is still the expectation."""
    return mean_variance_loss(logits, ages, 0.0, 0.0, reduction, label_sigma)


def l2_loss(outputs: torch.Tensor, ages: torch.Tensor, reduction: str = "mean"):
    """Squared error of a direct regression, outputs (N, 1) or (N,)."""
    pred = outputs.reshape(outputs.shape[0], -1)
    if pred.shape[1] != 1:
        raise ValueError(f"l2 needs one output per image, got shape {tuple(outputs.shape)}")
    _check(pred, ages, reduction)
    return _reduce((pred[:, 0] - ages.to(pred.dtype)) ** 2, reduction)


class MeanVarianceLoss(nn.Module):
    def __init__(
        self, lambda_mean=LAMBDA_MEAN, lambda_var=LAMBDA_VAR, reduction="mean", label_sigma=0.0
    ):
        super().__init__()
        self.lambda_mean, self.lambda_var, self.reduction = lambda_mean, lambda_var, reduction
        self.label_sigma = label_sigma

    def forward(self, logits, ages, label_sigma=None):
        """``label_sigma``: per-image widths (N,) for this batch, else the module's own."""
        sigma = self.label_sigma if label_sigma is None else label_sigma
        return mean_variance_loss(
            logits, ages, self.lambda_mean, self.lambda_var, self.reduction, sigma
        )


class SoftmaxLoss(nn.Module):
    def __init__(self, reduction="mean", label_sigma=0.0):
        super().__init__()
        self.reduction, self.label_sigma = reduction, label_sigma

    def forward(self, logits, ages, label_sigma=None):
        sigma = self.label_sigma if label_sigma is None else label_sigma
        return softmax_loss(logits, ages, self.reduction, sigma)


class L2Loss(nn.Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, outputs, ages, label_sigma=None):  # a regression has no target width
        return l2_loss(outputs, ages, self.reduction)


# One implementation per entry of common.losses.LOSSES (a test checks that they match), built
# from (lambda_mean, lambda_var, label_sigma).
IMPLEMENTATIONS = {
    "mean_variance": lambda lm, lv, sigma: MeanVarianceLoss(lm, lv, label_sigma=sigma),
    "softmax": lambda lm, lv, sigma: SoftmaxLoss(label_sigma=sigma),
    "l2": lambda lm, lv, sigma: L2Loss(),
}


def make_loss(
    name: str,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    label_sigma: float = 0.0,
):
    """The loss module a config names."""
    check_label_sigma(name, label_sigma)  # and an unknown name fails with the known ones
    return IMPLEMENTATIONS[name](lambda_mean, lambda_var, label_sigma)
