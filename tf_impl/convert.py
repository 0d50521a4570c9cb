"""The port of PyTorch weights (torchvision's ImageNet files, agezoo's PyTorch age models) into
the Keras backbones built in torchvision's layout (``tf_impl.backbones``).

Porting the same file into both frameworks lets them start from identical weights: conv kernels
OIHW → HWIO, depthwise kernels (C, 1, H, W) → (H, W, C, 1), BatchNorm's four tensors as they are.
Reading a PyTorch file needs the ``torch`` library, never ``torch_impl``.

The converted weights are cached as ``.weights.h5`` next to the cache, keyed by the source hash,
so PyTorch is needed only for the first conversion.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

import weights as weight_registry
from common.datasets import default_cache_dir
from tf_impl.backbones import backbone_of
from weights import WeightsUnavailableError


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


def read_torch_state(path: str | Path) -> dict:
    """The state dict in a PyTorch weights file or agezoo checkpoint, as numpy arrays."""
    try:
        import torch
    except ImportError as exc:
        raise WeightsUnavailableError(f"reading {path} needs PyTorch: pip install torch") from exc
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # an agezoo checkpoint
    return {k: v.numpy() for k, v in state.items()}


def port_torch_age_model(state: dict, arch: str, keras_model: keras.Model) -> None:
    """Copies a PyTorch age model's state dict (MobileNetV2, ResNet-34 or ResNet-50: backbone
    and age head) into the Keras age model of the same architecture. The head is copied when its
    shape fits (an L2 model started from a 101-class one keeps its own fresh head)."""
    if arch not in PORTS:
        raise ValueError(f"no torch → Keras port for {arch}; known: {sorted(PORTS)}")
    state = {k: np.asarray(v) for k, v in state.items()}
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    PORTS[arch](backbone_of(keras_model), backbone)
    head = keras_model.get_layer("age_head")
    kernel = state["head.weight"].T
    if kernel.shape == tuple(head.kernel.shape):
        head.set_weights([kernel, state["head.bias"]])


def _torch_names(arch: str):
    """Keras layer name → torch parameter prefix inside the backbone, per architecture."""
    if arch == "mobilenet_v2":
        return lambda name: name.replace("_", ".")
    if arch in ("resnet34", "resnet50"):
        return _resnet_torch_name
    raise ValueError(f"no Keras → torch port for {arch}; known: {sorted(PORTS)}")


def torch_state_of(keras_model: keras.Model, arch: str) -> dict[str, np.ndarray]:
    """The reverse of :func:`port_torch_age_model`: a Keras age model's weights as the state
    dict of the PyTorch age model of the same architecture (numpy arrays, torch's names and
    layouts), for the application layer to load into ``torch_impl`` and export. Needs no torch.
    """
    torch_name = _torch_names(arch)
    state: dict[str, np.ndarray] = {}
    for layer in backbone_of(keras_model).layers:
        if not layer.weights:
            continue
        prefix = f"backbone.{torch_name(layer.name)}"
        values = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(layer, layers.DepthwiseConv2D):
            state[f"{prefix}.weight"] = values[0].transpose(2, 3, 0, 1)
        elif isinstance(layer, layers.Conv2D):
            state[f"{prefix}.weight"] = values[0].transpose(3, 2, 0, 1)
        elif isinstance(layer, layers.BatchNormalization):
            for key, value in zip(
                ("weight", "bias", "running_mean", "running_var"), values, strict=True
            ):
                state[f"{prefix}.{key}"] = value
            state[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)
        else:
            raise ValueError(f"no torch counterpart for Keras layer {layer.name}")
    head = keras_model.get_layer("age_head")
    kernel, bias = head.get_weights()
    state["head.weight"], state["head.bias"] = kernel.T, bias
    return {k: np.ascontiguousarray(v) for k, v in state.items()}
