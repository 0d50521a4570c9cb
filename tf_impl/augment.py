"""Batch augmentation as one Keras layer, the same transform as ``torch_impl.train.augment``.

One random similarity per image (scale ±10 %, rotation ±10°, shift ±3 % of the side, horizontal
flip) applied in a single resampling pass, then the colour jitter of ``common.augment`` on the
0..255 scale (brightness and contrast; saturation, grey and gamma when asked for). Stacking
Keras' RandomZoom / RandomRotation / RandomTranslation resamples the image three times, which
cost 7 % of the training throughput on the CPU here.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from common.augment import LUMA


@keras.saving.register_keras_serializable(package="agezoo")
class FaceAugment(keras.layers.Layer):
    """Random similarity + flip + brightness/contrast on (N, H, W, 3) 0..255 images; training
    only."""

    def __init__(
        self,
        scale=0.1,
        rotation=10.0,
        shift=0.06,
        brightness=20.0,
        contrast=0.2,
        seed=None,
        saturation=0.0,
        gray=0.0,
        gamma=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.scale, self.rotation, self.shift = scale, rotation, shift
        self.brightness, self.contrast, self.seed = brightness, contrast, seed
        self.saturation, self.gray, self.gamma = saturation, gray, gamma
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n, lo, hi):
        return keras.random.uniform((n,), lo, hi, seed=self.seed_generator)

    def call(self, images, training=None):
        if not training:
            return images
        n = ops.shape(images)[0]
        h, w = images.shape[1], images.shape[2]
        s = self._uniform(n, 1 - self.scale, 1 + self.scale)
        angle = self._uniform(n, -self.rotation, self.rotation) * (math.pi / 180)
        flip = ops.where(self._uniform(n, 0.0, 1.0) < 0.5, -1.0, 1.0)
        tx = self._uniform(n, -self.shift, self.shift) * (w / 2)
        ty = self._uniform(n, -self.shift, self.shift) * (h / 2)
        cos, sin = ops.cos(angle) / s, ops.sin(angle) / s
        # Output pixel → input pixel, about the image centre (as torch's affine_grid).
        a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
        cx, cy = (w - 1) / 2, (h - 1) / 2
        a2 = cx - a0 * cx - a1 * cy + tx
        b2 = cy - b0 * cx - b1 * cy + ty
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        x = ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0
        )
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        c = ops.reshape(self._uniform(n, 1 - self.contrast, 1 + self.contrast), (-1, 1, 1, 1))
        b = ops.reshape(self._uniform(n, -self.brightness, self.brightness), (-1, 1, 1, 1))
        x = ops.clip((x - mean) * c + mean + b, 0.0, 255.0)
        if self.saturation or self.gray:
            s = self._uniform(n, 1 - self.saturation, 1 + self.saturation)
            s = ops.where(self._uniform(n, 0.0, 1.0) < self.gray, 0.0, s)
            s = ops.reshape(s, (-1, 1, 1, 1))
            luma = ops.sum(x * ops.convert_to_tensor(LUMA, x.dtype), axis=-1, keepdims=True)
            x = ops.clip(luma + s * (x - luma), 0.0, 255.0)
        if self.gamma:
            g = ops.reshape(ops.exp(self._uniform(n, -self.gamma, self.gamma)), (-1, 1, 1, 1))
            x = 255.0 * ops.power(x / 255.0, g)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "rotation": self.rotation,
            "shift": self.shift,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "seed": self.seed,
            "saturation": self.saturation,
            "gray": self.gray,
            "gamma": self.gamma,
        }
