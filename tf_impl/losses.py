"""Age losses in Keras 3 (``keras.ops`` only, so any backend): pure functions + Loss wrappers.

Tested against the numpy reference in ``common.losses``: value and gradient with respect to the
logits, taken with the backend's autodiff.

Example:
    >>> import numpy as np
    >>> loss = mean_variance_loss(np.zeros((2, 101), "float32"), np.array([50.0, 50.0]))
    >>> round(float(loss), 3)
    47.115
"""

from __future__ import annotations

import keras
from keras import ops

from common.losses import LAMBDA_MEAN, LAMBDA_VAR, check_label_sigma

REDUCTIONS = ("mean", "sum", "none")


def _check(outputs, ages, reduction: str, two_d: bool = True):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if two_d and len(outputs.shape) != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(outputs.shape)}")
    n = outputs.shape[0]
    if len(ages.shape) != 1 or (n is not None and ages.shape[0] is not None and ages.shape[0] != n):
        raise ValueError(
            f"ages must be (N,) with N = {n} to match the outputs, got shape {tuple(ages.shape)}"
        )


def _reduce(per_sample, reduction: str):
    if reduction == "mean":
        return ops.mean(per_sample)
    if reduction == "sum":
        return ops.sum(per_sample)
    return per_sample


def mean_variance_loss(
    logits,
    ages,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    reduction: str = "mean",
    label_sigma=0.0,
):
    """Softmax CE + λ1·½(m − y)² + λ2·Σ p_j (j − m)² (Pan et al., CVPR 2018).

    Args:
        logits: (N, K) scores over ages 0..K-1.
        ages: (N,) true ages in years; CE uses the rounded age clipped into 0..K-1.
        reduction: ``mean`` over the batch (the paper), ``sum`` or ``none``.
        label_sigma: > 0: CE against a Gaussian of this std around the age instead
            (``common.losses.label_distribution``); an (N,) tensor gives each image its own
            width (0: that image's one-hot target).
    """
    logits = ops.convert_to_tensor(logits)
    ages = ops.convert_to_tensor(ages)
    _check(logits, ages, reduction)
    k = logits.shape[-1]
    logp = ops.log_softmax(logits, axis=-1)
    p = ops.exp(logp)
    j = ops.cast(ops.arange(k), logits.dtype)
    y = ops.clip(ops.cast(ages, logits.dtype), 0, k - 1)
    m = ops.sum(p * j, axis=-1)
    v = ops.sum(p * j * j, axis=-1) - m * m
    q = ops.one_hot(ops.cast(ops.round(y), "int32"), k, dtype=logits.dtype)
    if not isinstance(label_sigma, int | float):  # per-image widths
        sigma = ops.cast(ops.reshape(label_sigma, (-1,)), logits.dtype)
        width = ops.where(sigma > 0, sigma, ops.ones_like(sigma))[:, None]
        gauss = ops.softmax(-0.5 * ((j[None, :] - y[:, None]) / width) ** 2, axis=-1)
        q = ops.where(sigma[:, None] > 0, gauss, q)
    elif label_sigma > 0:
        q = ops.softmax(-0.5 * ((j[None, :] - y[:, None]) / label_sigma) ** 2, axis=-1)
    ce = -ops.sum(q * logp, axis=-1)
    return _reduce(ce + lambda_mean * 0.5 * (m - y) ** 2 + lambda_var * v, reduction)


def softmax_loss(logits, ages, reduction: str = "mean", label_sigma=0.0):
    """Cross-entropy on the rounded age class only; the prediction is still the expectation."""
    return mean_variance_loss(logits, ages, 0.0, 0.0, reduction, label_sigma)


def l2_loss(outputs, ages, reduction: str = "mean"):
    """Squared error of a direct regression, outputs (N, 1) or (N,)."""
    outputs = ops.convert_to_tensor(outputs)
    ages = ops.convert_to_tensor(ages)
    pred = (
        ops.reshape(outputs, (-1,)) if len(outputs.shape) == 1 or outputs.shape[-1] == 1 else None
    )
    if pred is None:
        raise ValueError(f"l2 needs one output per image, got shape {tuple(outputs.shape)}")
    _check(pred, ages, reduction, two_d=False)
    return _reduce((pred - ops.cast(ages, pred.dtype)) ** 2, reduction)


def split_targets(y_true):
    """(ages (N,), per-image target widths (N,) or ``None``) from Keras' ``y_true``: the ages
    (N,) or (N, 1), or (N, 2) rows of age and width under ``loss.vote_sigma``."""
    if len(y_true.shape) == 2 and y_true.shape[-1] == 2:
        return y_true[:, 0], y_true[:, 1]
    return ops.reshape(y_true, (-1,)), None


class _AgeLoss(keras.losses.Loss):
    """Keras wrapper: ``y_true`` as :func:`split_targets` reads it; per-sample values, batch
    mean."""

    fn = None

    def __init__(self, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name or type(self).__name__, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        return type(self).fn(y_pred, split_targets(y_true)[0], reduction="none")


@keras.saving.register_keras_serializable(package="agezoo")
class MeanVarianceLoss(_AgeLoss):
    def __init__(self, lambda_mean=LAMBDA_MEAN, lambda_var=LAMBDA_VAR, label_sigma=0.0, **kwargs):
        super().__init__(**kwargs)
        self.lambda_mean, self.lambda_var, self.label_sigma = lambda_mean, lambda_var, label_sigma

    def call(self, y_true, y_pred):
        y, sigma = split_targets(y_true)
        return mean_variance_loss(
            y_pred,
            y,
            self.lambda_mean,
            self.lambda_var,
            reduction="none",
            label_sigma=self.label_sigma if sigma is None else sigma,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "lambda_mean": self.lambda_mean,
            "lambda_var": self.lambda_var,
            "label_sigma": self.label_sigma,
        }


@keras.saving.register_keras_serializable(package="agezoo")
class SoftmaxLoss(_AgeLoss):
    def __init__(self, label_sigma=0.0, **kwargs):
        super().__init__(**kwargs)
        self.label_sigma = label_sigma

    def call(self, y_true, y_pred):
        y, sigma = split_targets(y_true)
        sigma = self.label_sigma if sigma is None else sigma
        return softmax_loss(y_pred, y, reduction="none", label_sigma=sigma)

    def get_config(self):
        return {**super().get_config(), "label_sigma": self.label_sigma}


@keras.saving.register_keras_serializable(package="agezoo")
class L2Loss(_AgeLoss):
    fn = staticmethod(l2_loss)


# One implementation per entry of common.losses.LOSSES (a test checks that they match), built
# from (lambda_mean, lambda_var, label_sigma).
IMPLEMENTATIONS = {
    "mean_variance": lambda lm, lv, sigma: MeanVarianceLoss(lm, lv, sigma),
    "softmax": lambda lm, lv, sigma: SoftmaxLoss(sigma),
    "l2": lambda lm, lv, sigma: L2Loss(),
}


def make_loss(
    name: str,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    label_sigma: float = 0.0,
):
    """The Keras loss a config names."""
    check_label_sigma(name, label_sigma)  # and an unknown name fails with the known ones
    return IMPLEMENTATIONS[name](lambda_mean, lambda_var, label_sigma)
