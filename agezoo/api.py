"""The Python API: ages of the faces in photos, paths or arrays, with one call.

Usage (the README runs this example in its tests)::

    import agezoo
    faces = agezoo.predict(["group.jpg", rgb_array, pil_image], model="runs/torch-...")
    faces[0]["age"], faces[0]["std"], faces[0]["low"], faces[0]["high"]
    estimator = agezoo.AgeEstimator()  # the default model, loaded once
    estimator(["a.jpg"]), estimator(["b.jpg"])

Every face gives the record ``agezoo predict --json`` prints: file (the path, or ``<array N>``
for an image passed in memory), face (0 = the largest), box, age, std, low / high (the 90 %
interval) and method (how the face was found). Photos that cannot be used are listed in
``AgeEstimator.failures`` after each call, with the reason, and never raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from agezoo.backends import load_predictor
from common.predictor import FLIP, Failure, Predictor

ImageLike = "str | Path | np.ndarray | PIL.Image.Image"


class AgeEstimator:
    """A loaded age model, reused across calls.

    Args:
        model: a run folder, a model file (``.pt``, ``.keras``, ``.onnx``) or a registered
            name; ``None`` takes the registry's default.
        device: PyTorch device (``auto``, ``cpu``, ``cuda``).
        every_face: every face of each photo, or only the largest.
        fallback_center: treat a photo with no face found as a tight face crop.
        flip: test-time flip (each face also mirrored, outputs averaged; about 2 % lower MAE,
            twice the model's time; off by default, as in ``agezoo predict``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        every_face: bool = True,
        fallback_center: bool = False,
        flip: bool = FLIP,
    ):
        self.predictor: Predictor = load_predictor(model, device)
        self.predictor.flip = flip
        self.every_face, self.fallback_center = every_face, fallback_center
        self.failures: list[Failure] = []

    @property
    def card(self):
        return self.predictor.card

    def __call__(self, images: ImageLike | Iterable[ImageLike]) -> list[dict]:
        """One record per face found, in the order of the inputs."""
        if isinstance(images, (str, Path, np.ndarray)) or hasattr(images, "convert"):
            images = [images]
        result = self.predictor.predict_inputs(
            list(images), every_face=self.every_face, fallback_center=self.fallback_center
        )
        self.failures = result.failures
        return [asdict(face) for face in result.faces]


def predict(images: ImageLike | Iterable[ImageLike], model: str | Path | None = None, **kwargs):
    """Ages of the faces in ``images`` (paths, RGB uint8 arrays or PIL images) in one call;
    ``kwargs`` as for :class:`AgeEstimator`. Loads the model each time: reuse an
    ``AgeEstimator`` for many calls."""
    return AgeEstimator(model, **kwargs)(images)
