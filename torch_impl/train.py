"""PyTorch training: one loop for every registered model and loss.

Usage: ``python -m torch_impl.train [PRESET|CONFIG.yaml] [key=value ...]``, e.g.
``python -m torch_impl.train quick data.dataset=synthetic``. Under ``torchrun`` with
WORLD_SIZE > 1 it trains with DistributedDataParallel (NCCL on GPUs, gloo on CPUs).

Reproducibility: with a fixed seed, CPU runs are bit-reproducible on the same machine and
library versions; CUDA runs are not (cuDNN autotuning, atomics in backward passes).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchvision
from tqdm import tqdm

from common import results, runner
from common.augment import color_jitter
from common.cache import FaceArrays
from common.config import Config, save_config, to_dict
from common.losses import decode_outputs, loss_spec, target_widths
from common.results import TORCH_BEST as BEST
from common.results import TORCH_LAST as CHECKPOINT
from common.sampling import epoch_order
from common.splits import Fold
from torch_impl.checkpoint import load_checkpoint_file, resume_state, save_checkpoint
from torch_impl.losses import make_loss
from torch_impl.models import AUX_LOSS_WEIGHT, create_model
from torch_impl.optim import lr_lambda, make_optimizer
from torch_impl.preprocess import augment, resolve_device, to_input
from torch_impl.trackers import log_epoch, trackers

# ------------------------------------------------------------------ loop


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)


def _compute_loss(loss_fn, outputs, ages, sigma=None):
    """The batch's loss and its main output; ``sigma``: per-image target widths, if any."""
    if isinstance(outputs, tuple):  # InceptionV3's auxiliary head, in training only
        main, aux = outputs
        return loss_fn(main, ages, sigma) + AUX_LOSS_WEIGHT * loss_fn(aux, ages, sigma), main
    return loss_fn(outputs, ages, sigma), outputs


class Trainer:
    """Holds the model, the data on the device and the optimiser state of one run."""

    def __init__(
        self,
        cfg: Config,
        faces: FaceArrays,
        fold: Fold,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
    ):
        self.cfg, self.fold, self.device, self.rank, self.world = cfg, fold, device, rank, world
        self.loss_name = cfg.loss.name
        self.input_size = cfg.model.input_size or cfg.data.size
        parts = fold.indices(faces.persons)
        self.train_idx, self.val_idx, self.test_idx = parts["train"], parts["val"], parts["test"]
        if len(self.train_idx) == 0 or len(self.val_idx) == 0:
            raise ValueError(f"fold {fold.name}: no training or validation images")
        self.faces = faces
        self.images = torch.from_numpy(faces.images).to(device)
        self.ages = torch.from_numpy(faces.ages).to(device)
        widths = target_widths(faces.age_stds, cfg.loss)
        self.sigmas = None if widths is None else torch.from_numpy(widths).to(device)
        loss = loss_spec(self.loss_name)
        self.model = create_model(
            cfg.model.name, loss.outputs(cfg.data.num_classes), cfg.model.weights, self.input_size
        ).to(device)
        self.pretrained = self.model.pretrained
        bias = loss.head_bias(faces.ages[self.train_idx])
        if bias is not None:
            torch.nn.init.zeros_(self.model.head.weight)
            torch.nn.init.constant_(self.model.head.bias, bias)
        if cfg.model.freeze_backbone:
            self.model.backbone.requires_grad_(False)
        cuda = device.type == "cuda"
        self.channels_last = cuda and cfg.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = (
            torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.amp = cuda and cfg.amp
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp and self.amp_dtype is torch.float16
        )
        self.net = self.model
        if world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if cuda else None
            )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(cfg, params)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg, self.steps_per_epoch)
        )
        self.loss_fn = make_loss(
            self.loss_name, cfg.loss.lambda_mean, cfg.loss.lambda_var, cfg.loss.label_sigma
        )
        self.mean, self.std = self.model.entry.mean, self.model.entry.std
        self.color = color_jitter(cfg.augment_color)

    def _steps_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_idx) / self.world)
        steps = max(1, per_rank // self.cfg.optim.batch_size)  # drop the ragged last batch
        if self.cfg.max_steps_per_epoch:
            steps = min(steps, self.cfg.max_steps_per_epoch)
        return steps

    def _inputs(self, idx: torch.Tensor, train: bool, generator=None) -> torch.Tensor:
        batch = self.images[idx]
        if train and self.cfg.augment:
            batch = augment(batch, generator, self.color)
        return to_input(batch, self.mean, self.std, self.input_size, self.channels_last)

    def train_one_epoch(self, epoch: int, progress: bool = True) -> dict:
        """One pass over this rank's share of the training people; returns loss, MAE, speed."""
        self.net.train()
        if self.cfg.model.freeze_backbone:
            self.model.backbone.eval()  # frozen BatchNorm statistics too
        gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        if self.cfg.optim.band_balance:
            ages = self.faces.ages[self.train_idx]
            order = epoch_order(
                self.train_idx, ages, self.cfg.seed, epoch, self.cfg.optim.band_balance
            )
            perm = torch.from_numpy(order)
        else:
            perm = torch.from_numpy(self.train_idx)[
                torch.randperm(len(self.train_idx), generator=gen)
            ]
        perm = perm[self.rank :: self.world].to(self.device)
        bs = self.cfg.optim.batch_size
        total_loss = total_err = seen = 0.0
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{self.cfg.optim.epochs}",
            leave=False,
            disable=not progress or self.rank != 0,
            unit="batch",
        )
        t0 = time.perf_counter()
        for step in bar:
            idx = perm[step * bs : (step + 1) * bs]
            x, y = self._inputs(idx, True, gen), self.ages[idx]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outputs = self.net(x)
            outputs = (
                tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()
            )
            sigma = None if self.sigmas is None else self.sigmas[idx]
            loss, main = _compute_loss(self.loss_fn, outputs, y, sigma)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            pred, _ = decode_outputs(main.detach().cpu().numpy(), self.loss_name)
            err = np.abs(pred - y.cpu().numpy()).sum()
            n = len(idx)
            total_loss += loss.item() * n
            total_err += err
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", mae=f"{total_err / seen:.2f}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return {
            "train_loss": total_loss / seen,
            "train_mae": total_err / seen,
            "train_images_per_s": seen * self.world / seconds,
            "train_seconds": seconds,
        }

    @torch.no_grad()
    def outputs(self, idx: np.ndarray, batch_size: int = 128, mirror: bool = False) -> np.ndarray:
        """Raw network outputs (logits) for the given image indices, eval mode, no augmentation;
        of the mirrored images with ``mirror``."""
        self.model.eval()
        outs = [np.zeros((0, self.model.head.out_features), np.float32)]
        for start in range(0, len(idx), batch_size):
            part = torch.from_numpy(idx[start : start + batch_size]).to(self.device)
            x = self._inputs(part, False)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outs.append(self.model(x.flip(3) if mirror else x).float().cpu().numpy())
        return np.concatenate(outs)

    def predict(self, idx: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """(expected age, std) for the given image indices."""
        return decode_outputs(self.outputs(idx, batch_size), self.loss_name)

    def evaluate(self, idx: np.ndarray) -> float:
        pred, _ = self.predict(idx)
        return float(np.abs(pred - self.faces.ages[idx]).mean())

    # -------------------------------------------------------------- checkpoints

    def state(self, epoch: int, best: dict, fold_hash: str) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "best": best,
            "config": to_dict(self.cfg),
            "fold": self.fold.name,
            "fold_hash": fold_hash,
            "preprocess": self.faces.key,
            "pretrained": self.pretrained,
            "rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.pretrained = state["pretrained"]


def fit(
    cfg: Config,
    faces: FaceArrays,
    fold: Fold,
    fold_hash: str,
    run_dir: str | Path,
    progress: bool = True,
    checkpoints: bool = True,
    on_epoch_end=None,
) -> dict:
    """Trains on the fold's training people, picks the epoch by validation MAE, tests once.

    Writes the run folder (see ``common.results``) and returns the metrics dict. With
    ``checkpoints=False`` (throughput benchmarks) no checkpoint is written, so the run cannot be
    resumed or used later: the best epoch's weights are kept in memory. ``on_epoch_end(epoch)``
    is called after each epoch (the throughput benchmark times the bare model there).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    _seed_everything(cfg.seed)
    trainer = Trainer(cfg, faces, fold, device, rank, world)
    start, best = 0, {"val_mae": math.inf, "epoch": -1}
    log = results.CsvLog(run_dir / results.LOG, keep=cfg.resume)
    if cfg.resume and (run_dir / CHECKPOINT).is_file():
        state = resume_state(run_dir / CHECKPOINT, cfg, fold.name, fold_hash, device)
        trainer.load_state(state)
        start, best = state["epoch"] + 1, state["best"]
        log.truncate(start)
        if rank == 0:
            print(f"resuming {run_dir} after epoch {start} (best val MAE {best['val_mae']:.3f})")
    elif cfg.resume:
        print(f"resume=true but {run_dir / CHECKPOINT} does not exist; starting afresh")
    if rank == 0:
        save_config(cfg, run_dir / results.CONFIG)
    tb, wandb_run = trackers(cfg, run_dir, rank)
    t_train = time.perf_counter() - log.elapsed()  # a resumed run counts its earlier epochs
    stale, in_memory = 0, None
    for epoch in range(start, cfg.optim.epochs):
        stats = trainer.train_one_epoch(epoch, progress)
        val_mae = trainer.evaluate(trainer.val_idx)
        row = {
            "epoch": epoch,
            **stats,
            "val_mae": val_mae,
            "lr": trainer.scheduler.get_last_lr()[0],
            "elapsed_seconds": time.perf_counter() - t_train,
        }
        if val_mae < best["val_mae"]:
            best, stale = {"val_mae": val_mae, "epoch": epoch}, 0
            if rank == 0 and checkpoints:
                save_checkpoint(trainer.state(epoch, best, fold_hash), run_dir / BEST)
            elif not checkpoints:
                in_memory = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            stale += 1
        if rank == 0:
            if checkpoints:
                save_checkpoint(trainer.state(epoch, best, fold_hash), run_dir / CHECKPOINT)
            log.append(row)
            log_epoch(tb, wandb_run, row)
            if progress:
                print(
                    f"epoch {epoch + 1:3d}  loss {stats['train_loss']:.3f}  "
                    f"train MAE {stats['train_mae']:.2f}  val MAE {val_mae:.2f}  "
                    f"{stats['train_images_per_s']:.0f} img/s"
                )
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if cfg.optim.early_stopping and stale >= cfg.optim.early_stopping:
            if rank == 0 and progress:
                print(f"early stop: no better val MAE for {stale} epochs")
            break
    train_seconds = time.perf_counter() - t_train
    if world > 1:
        dist.barrier()
    best_state = None
    if in_memory is not None:
        trainer.model.load_state_dict(in_memory)
    elif (run_dir / BEST).is_file():
        best_state = load_checkpoint_file(run_dir / BEST, map_location=device)
        trainer.model.load_state_dict(best_state["model"])
    metrics = results.run_metrics(
        framework="torch",
        versions={"torch": torch.__version__, "torchvision": torchvision.__version__},
        device=str(device),
        cfg=to_dict(cfg),
        fold=fold,
        fold_hash=fold_hash,
        preprocess=faces.key,
        pretrained=trainer.pretrained,
        input_size=trainer.input_size,
        log_rows=log.rows,
        best=best,
        train_seconds=train_seconds,
    )

    def keep_calibration(calibration: dict | None) -> None:
        if rank == 0 and best_state is not None:
            best_state["calibration"] = calibration  # predict applies it
            save_checkpoint(best_state, run_dir / BEST)

    parts = {"val": trainer.val_idx, "test": trainer.test_idx}
    metrics, _ = results.evaluate_fold(
        trainer.outputs, faces, parts, cfg.loss.name, metrics, run_dir, rank == 0, keep_calibration,
        mirrored=lambda idx: trainer.outputs(idx, mirror=True),
    )  # fmt: skip
    if tb:
        tb.close()
    if wandb_run:
        wandb_run.finish()
    return metrics


def main(argv: list[str] | None = None) -> int:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        cfg = runner.parse_cli(sys.argv[1:] if argv is None else argv)
        if world > 1 and not cfg.run_dir:
            raise runner.UsageError("under torchrun, give run_dir=PATH so all ranks share it")
        plan = runner.plan_run(cfg, "torch", progress=rank == 0)
    except runner.HelpRequested:
        print(runner.train_usage("torch_impl.train"))
        return 0
    except runner.UsageError as exc:
        return runner.fail(str(exc))
    fold_hash = runner.write_folds(plan) if rank == 0 else ""
    if world > 1:
        holder = [fold_hash]
        dist.broadcast_object_list(holder, src=0)
        fold_hash = holder[0]
    if rank == 0:
        print(runner.describe(plan))
    try:
        metrics = fit(plan.cfg, plan.faces, plan.fold, fold_hash, plan.run_dir)
    except runner.ResumeError as exc:
        return runner.fail(str(exc))
    if rank == 0:
        print(runner.report(metrics, plan.run_dir / BEST, plan.run_dir / results.PREDICTIONS))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
