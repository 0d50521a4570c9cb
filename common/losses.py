"""Numpy reference of the age labels and the Mean-Variance loss.

Every framework implementation is tested against the functions here, in float64.

Reference: H. Pan, H. Han, S. Shan, X. Chen, "Mean-Variance Loss for Deep Age Estimation
from a Face", CVPR 2018.

Ages are in class units: class ``j`` is age ``j`` years, for ``j = 0 .. K-1``.

Example:
    >>> import numpy as np
    >>> logits = np.zeros((2, 101))
    >>> round(float(expected_age(logits)[0]), 6)
    50.0
    >>> round(mean_variance_loss(logits, np.array([50.0, 50.0])), 4)
    47.1151
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LAMBDA_MEAN = 0.2
LAMBDA_VAR = 0.05
DEFAULT_NUM_CLASSES = 101


def ages_to_classes(ages: np.ndarray, num_classes: int = DEFAULT_NUM_CLASSES) -> np.ndarray:
    """Rounds ages to the nearest class index, clipped into ``[0, num_classes - 1]``."""
    ages = np.asarray(ages, dtype=np.float64)
    return np.clip(np.rint(ages), 0, num_classes - 1).astype(np.int64)


def clip_ages(ages: np.ndarray, num_classes: int = DEFAULT_NUM_CLASSES) -> np.ndarray:
    """Clips ages into the range the classes cover, keeping fractional ages."""
    return np.clip(np.asarray(ages, dtype=np.float64), 0, num_classes - 1)


def _check(logits: np.ndarray, ages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    ages = np.asarray(ages, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    if ages.shape != (logits.shape[0],):
        raise ValueError(
            f"ages must be (N,) with N = {logits.shape[0]} to match logits, got shape {ages.shape}"
        )
    return logits, ages


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def expected_age(logits: np.ndarray) -> np.ndarray:
    """Expectation of the age distribution, ``(N, K) -> (N,)`` years."""
    p = softmax(logits)
    return p @ np.arange(p.shape[-1], dtype=np.float64)


def age_std(logits: np.ndarray) -> np.ndarray:
    """Standard deviation of the age distribution, ``(N, K) -> (N,)`` years."""
    p = softmax(logits)
    j = np.arange(p.shape[-1], dtype=np.float64)
    m = p @ j
    return np.sqrt(np.maximum(p @ (j**2) - m**2, 0.0))


def decode(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (expected age, standard deviation), both ``(N,)`` years."""
    return expected_age(logits), age_std(logits)


def label_distribution(
    ages: np.ndarray, num_classes: int = DEFAULT_NUM_CLASSES, sigma: float | np.ndarray = 0.0
) -> np.ndarray:
    """The cross-entropy target, ``(N,) -> (N, K)``: one-hot on the rounded, clipped age for
    ``sigma == 0`` (the paper); else a Gaussian of std ``sigma`` years around the clipped age,
    normalised over the classes (the label-distribution target of DLDL, Gao et al. 2017). An
    (N,) ``sigma`` gives each image its own width (APPA's vote std; 0 keeps that row one-hot)."""
    ages = np.asarray(ages, dtype=np.float64)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), ages.shape)
    if (sigma < 0).any() or not np.isfinite(sigma).all():
        raise ValueError(f"label sigma must be finite and 0 or more, got {sigma.min()}")
    onehot = np.eye(num_classes)[ages_to_classes(ages, num_classes)]
    if not (sigma > 0).any():
        return onehot
    j = np.arange(num_classes, dtype=np.float64)
    width = np.where(sigma > 0, sigma, 1.0)[:, None]
    q = np.exp(-0.5 * ((j[None, :] - clip_ages(ages, num_classes)[:, None]) / width) ** 2)
    return np.where(sigma[:, None] > 0, q / q.sum(axis=1, keepdims=True), onehot)


def _terms(logits: np.ndarray, ages: np.ndarray, num_classes: int, sigma=0.0):
    p = softmax(logits)
    j = np.arange(num_classes, dtype=np.float64)
    m = p @ j
    v = p @ (j**2) - m**2
    q = label_distribution(ages, num_classes, sigma)
    y = clip_ages(ages, num_classes)
    return p, j, m, v, q, y


def mean_variance_loss(
    logits: np.ndarray,
    ages: np.ndarray,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    label_sigma: float | np.ndarray = 0.0,
) -> float:
    """Softmax cross-entropy + λ1·½(m − y)² + λ2·Σ p_j (j − m)², averaged over the batch.

    Args:
        logits: (N, K) unnormalised scores.
        ages: (N,) true ages in years; the cross-entropy target is the rounded, clipped age.
        lambda_mean: weight λ1 of the mean loss (paper: 0.2).
        lambda_var: weight λ2 of the variance loss (paper: 0.05).
        label_sigma: 0 (the paper): one-hot target; else the cross-entropy is taken against a
            Gaussian of this std around the age (:func:`label_distribution`).
    """
    logits, ages = _check(logits, ages)
    k = logits.shape[1]
    p, _, m, v, q, y = _terms(logits, ages, k, label_sigma)
    ce = -np.sum(q * np.log(np.maximum(p, 1e-300)), axis=1)
    return float(np.mean(ce + lambda_mean * 0.5 * (m - y) ** 2 + lambda_var * v))


def mean_variance_grad(
    logits: np.ndarray,
    ages: np.ndarray,
    lambda_mean: float = LAMBDA_MEAN,
    lambda_var: float = LAMBDA_VAR,
    label_sigma: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Analytic gradient of :func:`mean_variance_loss` with respect to the logits, (N, K).

    With p = softmax(z), target q (Σ q = 1), m = Σ j p_j and v = Σ p_j (j − m)²:
    ∂CE/∂z_k = p_k − q_k,  ∂m/∂z_k = p_k (k − m),  ∂v/∂z_k = p_k ((k − m)² − v).
    """
    logits, ages = _check(logits, ages)
    n, k = logits.shape
    p, j, m, v, q, y = _terms(logits, ages, k, label_sigma)
    dev = j[None, :] - m[:, None]
    grad = p - q + lambda_mean * (m - y)[:, None] * p * dev + lambda_var * p * (dev**2 - v[:, None])
    return grad / n


def softmax_loss(logits: np.ndarray, ages: np.ndarray) -> float:
    """Plain softmax cross-entropy on the rounded age class (the ablation baseline)."""
    return mean_variance_loss(logits, ages, lambda_mean=0.0, lambda_var=0.0)


def l2_loss(predictions: np.ndarray, ages: np.ndarray) -> float:
    """Mean squared error of a direct age regression, predictions (N,) or (N, 1)."""
    pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
    ages = np.asarray(ages, dtype=np.float64)
    if pred.shape != ages.shape:
        raise ValueError(f"predictions {pred.shape} and ages {ages.shape} differ in length")
    return float(np.mean((pred - ages) ** 2))


@dataclass(frozen=True)
class LossSpec:
    """One loss, described once: both frameworks' ``make_loss``, the heads and decoding read it.

    Attributes:
        name: the config's ``loss.name``.
        distribution: True when the network outputs K logits of an age distribution (the age is
            its expectation, its std the uncertainty, calibrated by a temperature); False for a
            direct regression with one output (no std, no calibration).
        reference: the numpy reference of the loss, ``(outputs, ages) -> float``.
        description: one line for usage texts.
    """

    name: str
    distribution: bool
    reference: Callable[[np.ndarray, np.ndarray], float]
    description: str

    def outputs(self, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
        """Network outputs: K logits for a distribution, 1 for a regression."""
        return num_classes if self.distribution else 1

    def head_bias(self, train_ages: np.ndarray) -> float | None:
        """Where the age head starts: a regression starts at the mean training age (zero
        weights, this bias); ``None`` keeps the framework's default initialisation."""
        return None if self.distribution else float(np.mean(train_ages))


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("mean_variance", True, mean_variance_loss, "the paper's loss"),
        LossSpec("softmax", True, softmax_loss, "cross-entropy only, predicting the expectation"),
        LossSpec("l2", False, l2_loss, "direct regression, one output"),
    )
}
LOSS_NAMES = tuple(LOSSES)


def loss_spec(name: str) -> LossSpec:
    """The table entry of a loss; a clear error for an unknown name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {list(LOSSES)}")
    return LOSSES[name]


def num_outputs(loss_name: str, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    """Network outputs a loss needs: K logits for the distribution losses, 1 for L2."""
    return loss_spec(loss_name).outputs(num_classes)


def decode_outputs(
    outputs: np.ndarray, loss_name: str, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted age, standard deviation) from raw network outputs; a regression has no std (NaN).

    The age is always the expectation of the model's own distribution; a calibration
    ``temperature`` (``common.calibration``) only widens or narrows the reported spread.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if not loss_spec(loss_name).distribution:
        pred = outputs.reshape(len(outputs), -1)[:, 0]
        return pred, np.full(len(pred), np.nan)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return expected_age(outputs), age_std(outputs / temperature)


def target_widths(age_stds: np.ndarray, loss_cfg) -> np.ndarray | None:
    """Each image's label-distribution width (float32, years) under ``loss.vote_sigma``: the
    label's own spread where its data set gives one (APPA's vote std), else ``label_sigma``;
    ``None`` without ``vote_sigma`` (every image takes ``label_sigma``)."""
    if not loss_cfg.vote_sigma:
        return None
    if not loss_spec(loss_cfg.name).distribution:
        raise ValueError(f"loss.vote_sigma needs a distribution loss, not {loss_cfg.name!r}")
    stds = np.asarray(age_stds, dtype=np.float32)
    return np.where(np.isfinite(stds) & (stds >= 0), stds, loss_cfg.label_sigma).astype(np.float32)


def check_label_sigma(loss_name: str, label_sigma: float) -> None:
    """A label-distribution width is for the distribution losses only, and not negative."""
    spec = loss_spec(loss_name)
    if label_sigma < 0:
        raise ValueError(f"loss.label_sigma must be 0 or more, got {label_sigma}")
    if label_sigma > 0 and not spec.distribution:
        raise ValueError(
            f"loss.label_sigma={label_sigma} needs a distribution loss; {loss_name!r} regresses "
            "one number"
        )
