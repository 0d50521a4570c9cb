"""PyTorch preprocessing: the device, the one NHWC→NCHW step with normalisation, augmentation.

Training, prediction, export and the frozen benchmark all feed a PyTorch model through
:func:`to_input`, with the normalisation of the model's registry entry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from common.augment import COLOR, LUMA, ColorJitter


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} asked for, but CUDA is not available")
    return device


def to_input(
    images: torch.Tensor, mean, std, size: int, channels_last: bool = False
) -> torch.Tensor:
    """uint8 (N, H, W, 3) → normalised float (N, 3, size, size): the one NHWC→NCHW step."""
    # out of place: .float() of a float32 tensor is the tensor itself, often a caller's array
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size
        )
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(
    images: torch.Tensor, generator: torch.Generator, color: ColorJitter = COLOR["mild"]
) -> torch.Tensor:
    """Random scale / shift / small rotation, horizontal flip and colour jitter on a whole batch
    (``common.augment``: the same transform as the Keras layer).

    ``images`` is uint8 (N, H, W, 3); the result is uint8 of the same shape.
    """
    n, dev = images.shape[0], images.device

    def uniform(lo, hi):
        return torch.rand(n, generator=generator, device="cpu").to(dev) * (hi - lo) + lo

    x = images.permute(0, 3, 1, 2).float()
    scale = uniform(0.9, 1.1)
    angle = uniform(-10, 10) * math.pi / 180
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.06, 0.06)], 1),
            torch.stack([sin * flip, cos, uniform(-0.06, 0.06)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness = uniform(-color.brightness, color.brightness).view(n, 1, 1, 1)
    contrast = uniform(1 - color.contrast, 1 + color.contrast).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    if color.saturation or color.gray:
        x = x.clamp(0, 255)
        s = uniform(1 - color.saturation, 1 + color.saturation)
        s = torch.where(uniform(0, 1) < color.gray, 0.0, s).view(n, 1, 1, 1)
        luma = (x * torch.tensor(LUMA, device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = luma + s * (x - luma)
    if color.gamma:
        gamma = torch.exp(uniform(-color.gamma, color.gamma)).view(n, 1, 1, 1)
        x = 255.0 * (x.clamp(0, 255) / 255.0) ** gamma
    return x.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1)
