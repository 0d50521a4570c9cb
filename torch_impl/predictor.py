"""PyTorch backend of ``agezoo predict``: a run folder's ``best.pt`` or a checkpoint file.

Example:
    >>> import numpy as np, tempfile, torch
    >>> from torch_impl.models import create_model
    >>> model = create_model("mobilenet_v2", 101, "none", 64)
    >>> card = ModelCard("torch", "mobilenet_v2", "mean_variance", 101, 64, 0.2, "haar")
    >>> from common.predictor import ModelCard
    >>> predictor = torch_predictor(model, card)
    >>> predictor.estimate(np.zeros((2, 64, 64, 3), np.uint8))["age"].shape
    (2,)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.losses import num_outputs
from common.predictor import ModelCard, ModelNotFoundError, Predictor
from common.results import TORCH_BEST
from torch_impl.checkpoint import load_checkpoint_file
from torch_impl.models import AgeModel, create_model
from torch_impl.preprocess import resolve_device, to_input


def torch_predictor(
    model: AgeModel, card: ModelCard, input_size: int | None = None, device: str = "auto"
) -> Predictor:
    """Wraps an age model (eval mode, no gradients) in the common predictor.

    ``input_size`` is the network's input side when it differs from the crop (``card.size``).
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    size = input_size or card.size

    @torch.inference_mode()
    def forward(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).to(dev)
        return model(to_input(x, model.entry.mean, model.entry.std, size)).float().cpu().numpy()

    return Predictor(card, forward)


def load_checkpoint(path: str | Path) -> tuple[AgeModel, ModelCard, int]:
    """The age model, its card and its input side from ``best.pt`` (or its run folder)."""
    path = Path(path)
    file = path / TORCH_BEST if path.is_dir() else path
    if not file.is_file():
        raise ModelNotFoundError(f"{file}: no such checkpoint")
    state = load_checkpoint_file(file)  # ValueError naming a damaged or foreign file
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{file}: not an agezoo checkpoint (no config / model inside)")
    cfg = state["config"]
    card = ModelCard.from_config(
        "torch",
        cfg,
        state.get("calibration"),
        preprocess=state.get("preprocess", ""),
        source=str(file),
    )
    input_size = cfg["model"].get("input_size") or cfg["data"]["size"]
    model = create_model(
        cfg["model"]["name"],
        num_outputs(cfg["loss"]["name"], cfg["data"]["num_classes"]),
        "none",
        input_size,
    )
    model.load_state_dict(state["model"])
    return model, card, input_size


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    """The predictor of a run folder (``best.pt``) or a checkpoint file."""
    model, card, input_size = load_checkpoint(path)
    return torch_predictor(model, card, input_size, device)
