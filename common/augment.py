"""The colour part of training augmentation, one table for both frameworks.

``torch_impl.preprocess.augment`` and ``tf_impl.augment.FaceAugment`` apply the same transform:
a random similarity and flip, then per image, in this order,

1. contrast about the image mean (×1 ± ``contrast``) and brightness (± ``brightness``, 0..255);
2. saturation about the luma (×1 ± ``saturation``; with probability ``gray``, ×0: grey);
3. gamma (``255 · (x / 255) ** exp(u)``, ``u`` uniform in ± ``gamma``: over- and under-exposure),

clipped to 0..255 after each step. A step whose strength is 0 draws no random number, so
``mild`` gives exactly the transform (and random stream) of the runs made before this table.
``config.augment_color`` names the row.
"""

from __future__ import annotations

from dataclasses import dataclass

# ITU-R BT.601 luma weights of R, G, B.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ColorJitter:
    brightness: float = 20.0
    contrast: float = 0.2
    saturation: float = 0.0
    gray: float = 0.0
    gamma: float = 0.0


COLOR = {
    "mild": ColorJitter(),
    # Web photos over- or under-exposed, washed out, in black and white.
    "strong": ColorJitter(brightness=30.0, contrast=0.3, saturation=0.4, gray=0.1, gamma=0.5),
}


def color_jitter(name: str) -> ColorJitter:
    if name not in COLOR:
        raise ValueError(f"unknown augment_color {name!r}; known: {list(COLOR)}")
    return COLOR[name]
