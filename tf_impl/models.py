"""Keras 3 model registry with the same names as ``torch_impl.models``.

Backend-neutral Keras code (``keras.layers``, ``keras.ops``; no ``tf.*``). Every model takes
float RGB images in 0..255 of the data size, and holds its own preprocessing: optional resize to
the architecture's input size, then the normalisation of its registry entry. Augmentation is
applied outside the model (``tf_impl.train``), so a saved model is exactly what inference runs.

Example:
    >>> model = create_model("resnet34", num_classes=101, weights="none", input_size=64)
    >>> tuple(model.output_shape)
    (None, 101)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

import weights as weight_registry
from common.registry import Registry
from tf_impl.backbones import (
    backbone_of,
    mobilenet_v2_torch_layout,
    resnet34_backbone,
    resnet50_backbone,
)
from tf_impl.convert import PORTS, load_torchvision, port_torch_age_model, read_torch_state
from weights import WeightsUnavailableError


@keras.saving.register_keras_serializable(package="agezoo")
class Preprocess(layers.Layer):
    """(x / 255 − mean) / std on RGB 0..255 inputs, optionally flipped to BGR first."""

    def __init__(self, mean, std, bgr: bool = False, scale: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std, self.bgr, self.scale = list(mean), list(std), bgr, scale

    def call(self, x):
        if self.bgr:
            x = keras.ops.flip(x, axis=-1)
        mean = keras.ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = keras.ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x / self.scale - mean) / std

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "std": self.std,
            "bgr": self.bgr,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[int, str | None], keras.Model]  # (input size, keras weights) -> backbone
    input_size: int
    min_input: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False
    scale: float = 255.0
    keras_imagenet: bool = True  # keras.applications has ImageNet weights for it


REGISTRY: Registry[ModelEntry] = Registry("model")
register = REGISTRY.register
list_models = REGISTRY.names


def _torch_bn_momentum(build):
    """keras.applications builds BatchNorm with momentum 0.99; torchvision uses 0.1 (= Keras
    0.9), which matters in short runs. The epsilons already agree for InceptionV3 (1e-3)."""

    def wrapped(input_size: int, weights: str | None) -> keras.Model:
        backbone = build(input_size, weights)
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        return backbone

    return wrapped


def _application(fn):
    def build(input_size: int, weights: str | None) -> keras.Model:
        return fn(
            include_top=False,
            weights=weights,
            input_shape=(input_size, input_size, 3),
            pooling="avg",
        )

    return build


TORCH_NORM = {"mean": weight_registry.IMAGENET_MEAN, "std": weight_registry.IMAGENET_STD}
# The ResNets and MobileNetV2 take their ImageNet weights from torchvision's files (ported by
# tf_impl.convert), so that both frameworks start from the same weights; hence torchvision's
# normalisation. InceptionV3 is keras.applications' (see the README for what differs).
register(ModelEntry("resnet34", resnet34_backbone, 224, 32, keras_imagenet=False, **TORCH_NORM))
register(ModelEntry("resnet50", resnet50_backbone, 224, 32, keras_imagenet=False, **TORCH_NORM))
register(
    ModelEntry(
        "inception_v3",
        _torch_bn_momentum(_application(keras.applications.InceptionV3)),
        299,
        75,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
)
register(
    ModelEntry(
        "mobilenet_v2",
        lambda size, w: mobilenet_v2_torch_layout(size),
        224,
        32,
        keras_imagenet=False,
        **TORCH_NORM,
    )
)


# ------------------------------------------------------------------ the age model


def _load_imagenet(entry: ModelEntry, backbone_builder, input_size: int):
    """The ImageNet backbone; raises WeightsUnavailableError when it cannot be had."""
    if entry.name in PORTS:
        backbone = backbone_builder(input_size, None)
        load_torchvision(backbone, entry.name)
        return backbone
    if not entry.keras_imagenet:
        raise WeightsUnavailableError(f"{entry.name}: no Keras ImageNet weights exist")
    try:
        return backbone_builder(input_size, "imagenet")
    except (OSError, ValueError, Exception) as exc:  # keras raises plain Exceptions offline
        if isinstance(exc, WeightsUnavailableError):
            raise
        raise WeightsUnavailableError(
            f"{entry.name}: Keras ImageNet weights could not be downloaded ({exc}). Put the "
            "keras.applications weights file in ~/.keras/models, or use weights=none."
        ) from exc


def create_model(
    name: str,
    num_classes: int = 101,
    weights: str = "auto",
    input_size: int | None = None,
    data_size: int | None = None,
) -> keras.Model:
    """A registered backbone with its preprocessing and an age head of ``num_classes`` outputs.

    Args:
        name: one of :func:`list_models`.
        num_classes: K logits for the distribution losses, 1 for L2 regression.
        weights: ``imagenet``, ``auto`` (ImageNet when it can be had, else from scratch after a
            warning), ``none``, ``aaf`` (the AAF-pretrained age model of ``make pretrain``),
            ``aaf-appa`` (pretrained on AAF + APPA), ``aaf-torch`` / ``aaf-appa-torch`` (the
            PyTorch ones, ported; needs PyTorch), or a ``.keras`` / ``.weights.h5`` file.
        input_size: the network's input side (default: the entry's).
        data_size: the side of the images fed in (default: ``input_size``); resized inside.
    """
    entry = REGISTRY.lookup(name)
    input_size = input_size or entry.input_size
    data_size = data_size or input_size
    if input_size < entry.min_input:
        raise ValueError(f"{name} needs inputs of at least {entry.min_input} px, got {input_size}")
    if weights not in ("imagenet", "auto", "none") and Path(weights).suffix == ".keras":
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file {weights} not found")
        return keras.saving.load_model(weights)
    loaded = {}
    pretrained = weight_registry.load_pretrained(
        weights,
        name,
        lambda: loaded.setdefault("backbone", _load_imagenet(entry, entry.build, input_size)),
    )
    backbone = loaded["backbone"] if "backbone" in loaded else entry.build(input_size, None)
    inputs = keras.Input((data_size, data_size, 3), name="image")
    x = inputs
    if data_size != input_size:
        x = layers.Resizing(input_size, input_size, name="resize")(x)
    x = Preprocess(entry.mean, entry.std, entry.bgr, entry.scale, name="preprocess")(x)
    features = backbone(x)
    outputs = layers.Dense(num_classes, dtype="float32", name="age_head")(features)
    model = keras.Model(inputs, outputs, name=f"agezoo_{name}")
    kinds = weight_registry.PRETRAINED_KINDS
    if weights.endswith("-torch") and weights.removesuffix("-torch") in kinds:
        # The PyTorch age-pretrained model, ported: both frameworks start equal.
        torch_file = weight_registry.aaf_weights("torch", name, weights.removesuffix("-torch"))
        port_torch_age_model(read_torch_state(torch_file), name, model)
        pretrained = True
    elif weights not in ("imagenet", "auto", "none"):
        path = (
            weight_registry.aaf_weights("keras", name, weights)
            if weights in kinds
            else Path(weights)
        )
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} not found")
        _load_age_weights(model, path, name, input_size, data_size)
        pretrained = True
    model.pretrained = pretrained
    return model


def _load_age_weights(model, path: Path, name: str, input_size: int, data_size: int) -> None:
    """Whole-model weights; when only the head differs (L2 from a 101-class model), the
    backbone is taken from a twin that matches the file."""
    import warnings

    try:
        with warnings.catch_warnings():  # a mismatched head also warns on its way to failing
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
        return
    except ValueError:
        pass
    for classes in (101, 1):
        twin = create_model(name, classes, "none", input_size, data_size)
        try:
            twin.load_weights(path)
        except ValueError:
            continue
        backbone_of(model).set_weights(backbone_of(twin).get_weights())
        return
    raise ValueError(f"{path}: weights do not fit a {name} age model")
