"""Experiment trackers of a PyTorch run: TensorBoard when installed, W&B (offline by default)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from common.config import Config, to_dict


def trackers(cfg: Config, run_dir: Path, rank: int):
    """(TensorBoard writer, W&B run) of the main process, each None when off or absent."""
    tb = wandb_run = None
    if rank != 0:
        return tb, wandb_run
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tensorboard"))
    if importlib.util.find_spec("wandb") is not None:
        import wandb

        wandb_run = wandb.init(
            project="agezoo",
            dir=str(run_dir),
            config=to_dict(cfg),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit=True,
        )
    return tb, wandb_run


def log_epoch(tb, wandb_run, row: dict) -> None:
    """One epoch's log row to the trackers that are on."""
    if tb:
        for k, v in row.items():
            if k != "epoch":
                tb.add_scalar(k, v, row["epoch"])
    if wandb_run:
        wandb_run.log(row)
