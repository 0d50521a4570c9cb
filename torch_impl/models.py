"""PyTorch model registry: torchvision backbones with an age head.

The names match the Keras registry (``tf_impl.models``), so the benchmark can put the same
architecture side by side. Each model ends in K logits (the distribution losses) or one output
(the L2 baseline).

Example:
    >>> model = create_model("mobilenet_v2", num_classes=101, weights="none")
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 101])
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

import weights as weight_registry
from common.registry import Registry
from weights import WeightsUnavailableError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[], nn.Module]  # a torchvision model with its 1000-class ImageNet head
    head_attr: str  # attribute holding the ImageNet head, replaced by the age head
    feature_dim: int
    input_size: int
    min_input: int
    mean: tuple[float, float, float] = weight_registry.IMAGENET_MEAN
    std: tuple[float, float, float] = weight_registry.IMAGENET_STD

    @property
    def imagenet(self) -> weight_registry.WeightsEntry:
        return weight_registry.ENTRIES[f"torch/{self.name}/imagenet"]


REGISTRY: Registry[ModelEntry] = Registry("model")
register = REGISTRY.register
list_models = REGISTRY.names


tvm = torchvision.models
register(ModelEntry("resnet34", lambda: tvm.resnet34(), "fc", 512, 224, 32))
register(ModelEntry("resnet50", lambda: tvm.resnet50(), "fc", 2048, 224, 32))
register(ModelEntry("mobilenet_v2", lambda: tvm.mobilenet_v2(), "classifier", 1280, 224, 32))
register(
    ModelEntry(
        "inception_v3",
        lambda: tvm.inception_v3(weights=None, aux_logits=True, init_weights=False),
        "fc",
        2048,
        299,
        75,
    )
)

# InceptionV3's auxiliary classifier pools the 17×17 map (at 299 px) and then applies a 5×5
# convolution; below 299 px the map is too small, so the auxiliary head is dropped there.
INCEPTION_AUX_MIN_INPUT = 299
AUX_LOSS_WEIGHT = 0.4


class AgeModel(nn.Module):
    """Backbone + linear age head. In training, InceptionV3 returns (logits, aux_logits)."""

    def __init__(self, entry: ModelEntry, backbone: nn.Module, num_outputs: int):
        super().__init__()
        self.entry = entry
        self.backbone = backbone
        self.head = nn.Linear(entry.feature_dim, num_outputs)
        self.aux_head = None
        self.pretrained = False
        aux = getattr(backbone, "AuxLogits", None)
        if aux is not None:
            self.aux_head = nn.Linear(aux.fc.in_features, num_outputs)
            aux.fc = nn.Identity()

    def forward(self, x: torch.Tensor):
        out = self.backbone(x)
        if isinstance(out, tuple):  # torchvision's InceptionOutputs in training mode
            main, aux = out
            if aux is not None and self.aux_head is not None:
                return self.head(main), self.aux_head(aux)
            out = main
        return self.head(out)


def _load_state_dict(path: Path) -> dict:
    prefix = weight_registry.sha256_prefix_in_name(path)
    if prefix:
        weight_registry.check_sha256(path, prefix)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # an agezoo checkpoint
    return state


def imagenet_state_dict(entry: ModelEntry) -> dict:
    """ImageNet weights: local file, else the torch hub cache, else download (hash-checked)."""
    wentry = entry.imagenet
    local = weight_registry.find_local(wentry.filename)
    if local is not None:
        weight_registry.check_sha256(local, wentry.sha256)
        return torch.load(local, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(
            wentry.url, map_location="cpu", check_hash=True, progress=True
        )
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsUnavailableError(weight_registry.offline_message(wentry, str(exc))) from exc


def _load_age_state(model: AgeModel, state: dict) -> None:
    """An age model's weights: the backbone must match; the heads load when their shapes do
    (an L2 model started from a 101-class AAF model keeps its fresh one-output head)."""
    own = model.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    heads = {
        k: v
        for k, v in state.items()
        if not k.startswith("backbone.") and k in own and own[k].shape == v.shape
    }
    missing = [k for k in own if k.startswith("backbone.") and k not in backbone]
    if missing:
        raise ValueError(f"weights lack backbone tensors, e.g. {missing[:3]}; another model?")
    model.load_state_dict({**own, **backbone, **heads})


def create_model(
    name: str, num_classes: int = 101, weights: str = "auto", input_size: int | None = None
) -> AgeModel:
    """Builds a registered model with an age head of ``num_classes`` outputs.

    Args:
        name: one of :func:`list_models`.
        num_classes: K logits for the distribution losses, 1 for L2 regression.
        weights: ``imagenet`` (fail if unavailable), ``auto`` (ImageNet if it can be had, else
            from scratch after a warning), ``none``, ``aaf`` (the AAF-pretrained age model of
            ``make pretrain``), or a path to a state dict or checkpoint.
        input_size: the side of the inputs it will get (default: the entry's); checked against
            the architecture's minimum, and drops InceptionV3's auxiliary head when too small.
    """
    entry = REGISTRY.lookup(name)
    input_size = input_size or entry.input_size
    if input_size < entry.min_input:
        raise ValueError(f"{name} needs inputs of at least {entry.min_input} px, got {input_size}")
    net = entry.build()
    pretrained = weight_registry.load_pretrained(
        weights, name, lambda: net.load_state_dict(imagenet_state_dict(entry))
    )
    setattr(net, entry.head_attr, nn.Identity())
    if getattr(net, "AuxLogits", None) is not None and input_size < INCEPTION_AUX_MIN_INPUT:
        net.aux_logits, net.AuxLogits = False, None
    model = AgeModel(entry, net, num_classes)
    if weights not in ("imagenet", "auto", "none"):
        path = (
            weight_registry.aaf_weights("torch", name, weights)
            if weights in weight_registry.PRETRAINED_KINDS
            else Path(weights)
        )
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} not found")
        state = _load_state_dict(path)
        if any(k.startswith("backbone.") for k in state):
            _load_age_state(model, state)
        else:  # an ImageNet-style backbone state dict
            full = entry.build()
            full.load_state_dict(state)
            setattr(full, entry.head_attr, nn.Identity())
            model.backbone.load_state_dict(full.state_dict(), strict=False)
        pretrained = True
    model.pretrained = pretrained
    return model
