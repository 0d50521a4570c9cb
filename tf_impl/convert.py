"""MobileNetV2 in Keras with torchvision's layout, and the port of torchvision's weights into it
and into the hand-built ResNets of ``tf_impl.models``.

Porting the same file into both frameworks lets them start from identical weights. The details
that make the two agree to float precision:

* conv kernels OIHW → HWIO; depthwise kernels (C, 1, H, W) → (H, W, C, 1);
* BatchNorm epsilon 1e-5 (torchvision), not Keras' 1e-3;
* 3×3 convolutions pad 1 pixel on every side, as PyTorch does, by ``ZeroPadding2D(1)`` and a
  "valid" convolution; Keras' own MobileNetV2 pads stride-2 layers on the bottom/right only,
  which shifts every feature map by a pixel.

The converted weights are cached as ``.weights.h5`` next to the cache, keyed by the source hash,
so PyTorch is needed only for the first conversion.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

import weights as weight_registry
from common.datasets import default_cache_dir
from weights import WeightsUnavailableError

BN_EPSILON = 1e-5
# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _name(torch_prefix: str) -> str:
    return torch_prefix.replace(".", "_")


def _bn(x, prefix):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=_name(prefix))(x)


def _conv_bn_relu6(x, filters, kernel, stride, prefix, depthwise=False):
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=_name(prefix) + "_pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(
            kernel, strides=stride, use_bias=False, name=_name(prefix + ".0")
        )(x)
    else:
        x = layers.Conv2D(
            filters, kernel, strides=stride, use_bias=False, name=_name(prefix + ".0")
        )(x)
    x = _bn(x, prefix + ".1")
    return layers.ReLU(6.0, name=_name(prefix) + "_relu6")(x)


def mobilenet_v2_torch_layout(input_size: int = 224) -> keras.Model:
    """MobileNetV2 (width 1.0) returning the 1280-d average-pooled features.

    Layer names are torchvision's state-dict prefixes with dots as underscores.
    """
    inputs = keras.Input((input_size, input_size, 3))
    x = _conv_bn_relu6(inputs, 32, 3, 2, "features.0")
    channels, index = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"features.{index}.conv"
            y, j = x, 0
            if t != 1:
                y = _conv_bn_relu6(y, channels * t, 1, 1, f"{prefix}.0")
                j = 1
            y = _conv_bn_relu6(y, channels * t, 3, stride, f"{prefix}.{j}", depthwise=True)
            y = layers.Conv2D(c, 1, use_bias=False, name=_name(f"{prefix}.{j + 1}"))(y)
            y = _bn(y, f"{prefix}.{j + 2}")
            if stride == 1 and channels == c:
                y = layers.Add(name=_name(f"features.{index}") + "_add")([x, y])
            x, channels, index = y, c, index + 1
    x = _conv_bn_relu6(x, 1280, 1, 1, "features.18")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="mobilenet_v2")


def port_state_dict(model: keras.Model, state: dict) -> None:
    """Copies a torchvision MobileNetV2 state dict into :func:`mobilenet_v2_torch_layout`.

    Every Keras weight must be filled and every torch feature tensor used, else ValueError.
    """
    state = {k: np.asarray(v) for k, v in state.items()}
    used = set()
    for layer in model.layers:
        prefix = layer.name.replace("_", ".")
        if isinstance(layer, layers.DepthwiseConv2D):
            layer.set_weights([state[f"{prefix}.weight"].transpose(2, 3, 0, 1)])
            used.add(f"{prefix}.weight")
        elif isinstance(layer, layers.Conv2D):
            layer.set_weights([state[f"{prefix}.weight"].transpose(2, 3, 1, 0)])
            used.add(f"{prefix}.weight")
        elif isinstance(layer, layers.BatchNormalization):
            keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            layer.set_weights([state[k] for k in keys])
            used.update(keys)
    left = {k for k in state if k.startswith("features.") and not k.endswith("num_batches_tracked")}
    if left - used:
        raise ValueError(f"torch weights not used by the Keras model: {sorted(left - used)[:5]}")


def _resnet_torch_name(keras_name: str) -> str:
    """``stage2_block1_down_conv`` → ``layer2.0.downsample.0``; ``stem_bn`` → ``bn1``."""
    if keras_name.startswith("stem_"):
        return {"stem_conv": "conv1", "stem_bn": "bn1"}[keras_name]
    stage, block, part, kind = keras_name.split("_")
    prefix = f"layer{stage.removeprefix('stage')}.{int(block.removeprefix('block')) - 1}"
    if part == "down":
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{kind}{part}"


def port_resnet_state_dict(model: keras.Model, state: dict) -> None:
    """Copies a torchvision ResNet-34 / ResNet-50 state dict into the hand-built Keras ResNet
    of the same depth (``tf_impl.models``); every weight on both sides must be used."""
    state = {k: np.asarray(v) for k, v in state.items()}
    used = set()
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            key = f"{_resnet_torch_name(layer.name)}.weight"
            layer.set_weights([state[key].transpose(2, 3, 1, 0)])
            used.add(key)
        elif isinstance(layer, layers.BatchNormalization):
            prefix = _resnet_torch_name(layer.name)
            keys = [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            layer.set_weights([state[k] for k in keys])
            used.update(keys)
    left = {k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    if left - used:
        raise ValueError(f"torch weights not used by the Keras model: {sorted(left - used)[:5]}")


PORTS = {
    "mobilenet_v2": port_state_dict,
    "resnet34": port_resnet_state_dict,
    "resnet50": port_resnet_state_dict,
}


def load_torchvision(model: keras.Model, arch: str) -> None:
    """Fills a Keras backbone with torchvision's ImageNet weights of ``arch`` (ported once, then
    cached as ``keras-ARCH-SHA8.weights.h5``)."""
    entry = weight_registry.ENTRIES[f"torch/{arch}/imagenet"]
    cached = default_cache_dir() / "weights" / f"keras-{arch}-{entry.sha256[:8]}.weights.h5"
    if cached.is_file():
        model.load_weights(cached)
        return
    path = weight_registry.find_local(entry.filename)
    if path is None:
        raise WeightsUnavailableError(weight_registry.offline_message(entry, "file not found"))
    weight_registry.check_sha256(path, entry.sha256)
    try:
        import torch
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"porting torchvision's {arch} weights needs PyTorch once: pip install torch"
        ) from exc
    PORTS[arch](model, torch.load(path, map_location="cpu", weights_only=True))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.stem}.tmp.weights.h5")
    model.save_weights(tmp)
    tmp.replace(cached)


def port_torch_age_model(torch_model, keras_model: keras.Model) -> None:
    """Copies a PyTorch age model (MobileNetV2, ResNet-34 or ResNet-50: backbone and age head)
    into the Keras one of the same architecture."""
    from tf_impl.models import backbone_of

    arch = torch_model.entry.name
    if arch not in PORTS:
        raise ValueError(f"no torch → Keras port for {arch}; known: {sorted(PORTS)}")
    state = torch_model.state_dict()
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    PORTS[arch](backbone_of(keras_model), backbone)
    keras_model.get_layer("age_head").set_weights(
        [np.asarray(state["head.weight"]).T, np.asarray(state["head.bias"])]
    )
