"""PyTorch optimiser and learning-rate schedule, as the config names them."""

from __future__ import annotations

import math

import torch

from common.config import Config


def lr_lambda(cfg: Config, steps_per_epoch: int):
    """The schedule as a factor of the base rate per step, for ``LambdaLR``."""
    total = max(1, cfg.optim.epochs * steps_per_epoch)
    kind = cfg.optim.schedule
    if kind not in ("cosine", "step", "constant"):
        raise ValueError(f"unknown optim.schedule {kind!r}; known: cosine, step, constant")

    def factor(step: int) -> float:
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if kind == "step":
            return cfg.optim.gamma ** ((step // steps_per_epoch) // cfg.optim.step_size)
        return 1.0

    return factor


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
    raise ValueError(f"unknown optim.name {o.name!r}; known: adamw, sgd")
