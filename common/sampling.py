"""The order of the training images in an epoch, shared by both frameworks.

Face-age data sets hold few children and few old people: in All-Age-Faces + APPA, ages 60+
are about 6 % of the images. ``band_balance`` draws each epoch's images with replacement,
weighting an image by ``1 / n_band ** band_balance``, where ``n_band`` is the number of training
images in its age decade (0-9, 10-19, ..., 70+): 0 keeps the data's own mix (a plain shuffle),
1 draws every decade equally often, 0.5 sits between (the square-root rule).

Example:
    >>> import numpy as np
    >>> ages = np.array([5.0] * 90 + [75.0] * 10)
    >>> [round(float(band_weights(ages, b)[ages > 70].sum()), 2) for b in (0.0, 0.5, 1.0)]
    [0.1, 0.25, 0.5]
    >>> len(epoch_order(np.arange(100), ages, seed=0, epoch=0, band_balance=1.0))
    100
"""

from __future__ import annotations

import numpy as np

BAND_YEARS = 10
LAST_BAND = 7  # 70 and over


def age_bands(ages: np.ndarray) -> np.ndarray:
    """The decade of each age, 0 for 0-9 up to ``LAST_BAND`` for 70 and over."""
    ages = np.asarray(ages, dtype=np.float64)
    return np.clip(np.floor(ages / BAND_YEARS), 0, LAST_BAND).astype(np.int64)


def band_weights(ages: np.ndarray, band_balance: float) -> np.ndarray:
    """Sampling probability of each image (they sum to 1)."""
    if not 0 <= band_balance <= 1:
        raise ValueError(f"optim.band_balance must be within 0..1, got {band_balance}")
    bands = age_bands(ages)
    counts = np.bincount(bands, minlength=LAST_BAND + 1).astype(np.float64)
    weights = counts[bands] ** -band_balance
    return weights / weights.sum()


def epoch_order(
    idx: np.ndarray, ages: np.ndarray, seed: int, epoch: int, band_balance: float
) -> np.ndarray:
    """The image indices of one epoch, as many as ``idx``: a permutation of ``idx`` for
    ``band_balance == 0``, else a weighted draw with replacement (``band_weights``).

    ``ages`` are those of ``idx``, in the same order; the draw depends on (seed, epoch) only.
    """
    idx = np.asarray(idx)
    rng = np.random.default_rng([seed, epoch])
    if band_balance == 0:
        return idx[rng.permutation(len(idx))]
    return idx[rng.choice(len(idx), len(idx), p=band_weights(ages, band_balance))]
