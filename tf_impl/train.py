"""Keras 3 training: ``model.compile`` / ``model.fit`` for every registered model and loss.

Usage: ``python -m tf_impl.train [PRESET|CONFIG.yaml] [key=value ...]``, e.g.
``python -m tf_impl.train quick data.dataset=synthetic model.name=resnet34``.

Mirrors ``torch_impl.train``: same config, cache, folds and run-folder layout. The best epoch is
chosen by validation MAE on the fold's validation people; the test people are predicted once,
at the end. ``resume=true run_dir=...`` continues an interrupted run (BackupAndRestore).
On GPUs: mixed_float16, optional XLA (``xla=true``), MirroredStrategy when several are visible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from common import results, runner
from common.augment import color_jitter
from common.cache import FaceArrays
from common.config import Config, load_config, save_config, to_dict
from common.losses import loss_spec, target_widths
from common.results import KERAS_BEST_WEIGHTS as BEST_WEIGHTS
from common.results import KERAS_MODEL as MODEL_FILE
from common.splits import Fold
from tf_impl.augment import FaceAugment
from tf_impl.data import FaceBatches, KeepFreedMemory, keep_freed_memory, outputs, predict
from tf_impl.losses import make_loss, split_targets
from tf_impl.models import create_model

__all__ = ["FaceBatches", "fit", "keep_freed_memory", "main", "outputs", "predict"]


def make_optimizer(cfg: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    o = cfg.optim
    total = max(1, o.epochs * steps_per_epoch)
    if o.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(o.lr, decay_steps=total)
    elif o.schedule == "step":
        bounds = list(range(o.step_size * steps_per_epoch, total, o.step_size * steps_per_epoch))
        # A run shorter than one step keeps the first rate (Keras refuses empty boundaries).
        lr = (
            keras.optimizers.schedules.PiecewiseConstantDecay(
                bounds, [o.lr * o.gamma**i for i in range(len(bounds) + 1)]
            )
            if bounds
            else o.lr
        )
    elif o.schedule == "constant":
        lr = o.lr
    else:
        raise ValueError(f"unknown optim.schedule {o.schedule!r}; known: cosine, step, constant")
    if o.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return keras.optimizers.SGD(
            lr, momentum=o.momentum, nesterov=True, weight_decay=o.weight_decay
        )
    raise ValueError(f"unknown optim.name {o.name!r}; known: adamw, sgd")


def age_mae_metric(loss_name: str):
    """Running MAE of the predicted age, for the progress bar only (reports use common/)."""

    def mae(y_true, y_pred):
        y = keras.ops.cast(split_targets(y_true)[0], "float32")
        y_pred = keras.ops.cast(y_pred, "float32")
        if not loss_spec(loss_name).distribution:
            pred = y_pred[:, 0]
        else:
            j = keras.ops.cast(keras.ops.arange(y_pred.shape[-1]), "float32")
            pred = keras.ops.sum(keras.ops.softmax(y_pred, axis=-1) * j, axis=-1)
        return keras.ops.mean(keras.ops.abs(pred - y))

    mae.__name__ = "mae"
    return mae


class EpochRecorder(keras.callbacks.Callback):
    """Times each epoch, scores the validation people, keeps the best weights and the CSV log.

    State lives in the run folder (``best.json``, ``log.csv``) so a resumed run carries on.
    """

    def __init__(
        self,
        model_ref: keras.Model,
        faces: FaceArrays,
        val_idx,
        loss_name: str,
        run_dir: Path,
        images_per_epoch: int,
        resume: bool,
        tb_writer=None,
        keep_files: bool = True,
    ):
        super().__init__()
        self.keep_files, self.best_weights = keep_files, None  # in memory when no files
        self.age_model, self.faces, self.val_idx = model_ref, faces, val_idx
        self.loss_name, self.run_dir, self.images_per_epoch = loss_name, run_dir, images_per_epoch
        self.best_file = run_dir / results.BEST_EPOCH
        self.best = {"val_mae": float("inf"), "epoch": -1}
        if resume and self.best_file.is_file():
            self.best = json.loads(self.best_file.read_text())
        self.log = results.CsvLog(run_dir / results.LOG, keep=resume)
        self.t0 = 0.0
        self.t_train = None  # when this process's training started, less the earlier epochs'

    def on_epoch_begin(self, epoch, logs=None):
        self.log.truncate(epoch)
        self.t0 = time.perf_counter()
        if self.t_train is None:  # a resumed run counts its earlier epochs
            self.t_train = self.t0 - self.log.elapsed()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.t0
        pred, _ = predict(self.age_model, self.faces, self.val_idx, self.loss_name)
        val_mae = float(np.abs(pred - self.faces.ages[self.val_idx]).mean())
        if logs is not None:
            logs["val_mae"] = val_mae
        if val_mae < self.best["val_mae"]:
            self.best = {"val_mae": val_mae, "epoch": epoch}
            if self.keep_files:
                tmp = self.run_dir / f".tmp-{BEST_WEIGHTS}"
                self.age_model.save_weights(tmp)
                tmp.replace(self.run_dir / BEST_WEIGHTS)
            else:
                self.best_weights = self.age_model.get_weights()
        if self.keep_files:
            results.atomic_write_json(self.best_file, self.best)
        logs = logs or {}
        self.log.append(
            {
                "epoch": epoch,
                "train_loss": float(logs.get("loss", np.nan)),
                "train_mae": float(logs.get("mae", np.nan)),
                "train_images_per_s": self.images_per_epoch / seconds,
                "train_seconds": seconds,
                "val_mae": val_mae,
                "elapsed_seconds": time.perf_counter() - self.t_train,
            }
        )


def _gpus() -> int:
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    return 0


def _jit_compile(cfg: Config, gpus: int) -> bool:
    """XLA for the train step: always on JAX, whose steps run op by op without it (a ResNet-34
    step four times slower on a CPU, benchmarks/RESULTS.md); on TensorFlow, with ``xla: true``
    on GPUs only."""
    if keras.config.backend() == "jax":
        return True
    return bool(cfg.xla and gpus)


def _strategy(gpus: int):
    if gpus > 1 and keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy()
    return None


def _trackers(cfg: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    import importlib.util

    callbacks = []
    if (
        cfg.tensorboard
        and importlib.util.find_spec("tensorboard") is not None
        and keras.config.backend() == "tensorflow"
    ):
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    if importlib.util.find_spec("wandb") is not None:
        import os

        import wandb
        from wandb.integration.keras import WandbMetricsLogger

        wandb.init(
            project="agezoo",
            dir=str(run_dir),
            config=to_dict(cfg),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit=True,
        )
        callbacks.append(WandbMetricsLogger())
    return callbacks


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

    With ``checkpoints=False`` (throughput benchmarks) no backup, best weights or model file is
    written, so the run cannot be resumed or used later: the best weights are kept in memory.
    ``on_epoch_end(epoch)`` is called after each epoch, once its time and validation MAE are
    recorded (the throughput benchmark times the bare model there).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    parts = fold.indices(faces.persons)
    train_idx, val_idx = parts["train"], parts["val"]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"fold {fold.name}: no training or validation images")
    backup = run_dir / "backup"
    if cfg.resume and backup.is_dir():
        old_path = run_dir / results.CONFIG
        old = to_dict(load_config(str(old_path))) if old_path.is_file() else {}
        runner.check_same_config(old, cfg, run_dir)
        if progress:
            print(f"resuming {run_dir} from its last completed epoch")
    elif backup.exists():
        shutil.rmtree(backup)  # a fresh run in an old folder must not restore its state
    save_config(cfg, run_dir / results.CONFIG)

    gpus = _gpus()
    if gpus and cfg.amp:
        keras.mixed_precision.set_global_policy("mixed_float16")
    input_size = cfg.model.input_size or cfg.data.size
    train_data = FaceBatches(
        faces.images,
        faces.ages,
        train_idx,
        cfg.optim.batch_size,
        shuffle=True,
        seed=cfg.seed,
        max_batches=cfg.max_steps_per_epoch,
        band_balance=cfg.optim.band_balance,
        widths=target_widths(faces.age_stds, cfg.loss),
    )
    strategy = _strategy(gpus)
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        loss = loss_spec(cfg.loss.name)
        model = create_model(
            cfg.model.name,
            loss.outputs(cfg.data.num_classes),
            cfg.model.weights,
            input_size,
            data_size=cfg.data.size,
        )
        pretrained = model.pretrained
        head = model.get_layer("age_head")
        bias = loss.head_bias(faces.ages[train_idx])
        if bias is not None:
            kernel, head_bias = head.get_weights()
            head.set_weights([np.zeros_like(kernel), np.full(head_bias.shape, bias, np.float32)])
        if cfg.model.freeze_backbone:
            for layer in model.layers:
                if isinstance(layer, keras.Model):
                    layer.trainable = False
        inputs = keras.Input(model.input_shape[1:])
        color = dataclasses.asdict(color_jitter(cfg.augment_color))
        x = FaceAugment(seed=cfg.seed, **color)(inputs) if cfg.augment else inputs
        trainer = keras.Model(inputs, model(x), name="train")
        trainer.compile(
            optimizer=make_optimizer(cfg, len(train_data)),
            loss=make_loss(
                cfg.loss.name, cfg.loss.lambda_mean, cfg.loss.lambda_var, cfg.loss.label_sigma
            ),
            metrics=[age_mae_metric(cfg.loss.name)],
            jit_compile=_jit_compile(cfg, gpus),
        )
    recorder = EpochRecorder(
        model,
        faces,
        val_idx,
        cfg.loss.name,
        run_dir,
        len(train_data) * cfg.optim.batch_size,
        cfg.resume,
        keep_files=checkpoints,
    )
    callbacks = [
        recorder,
        KeepFreedMemory(),
        *([keras.callbacks.BackupAndRestore(str(backup))] if checkpoints else []),
        *_trackers(cfg, run_dir),
        *(
            [keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _: on_epoch_end(e))]
            if on_epoch_end is not None
            else []
        ),
    ]
    if cfg.optim.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping("val_mae", patience=cfg.optim.early_stopping, mode="min")
        )
    t_train = time.perf_counter()
    trainer.fit(
        train_data, epochs=cfg.optim.epochs, callbacks=callbacks, verbose=1 if progress else 0
    )
    if recorder.t_train is None:  # resumed after its last epoch: only the earlier epochs' time
        recorder.t_train = t_train - recorder.log.elapsed()
    train_seconds = time.perf_counter() - recorder.t_train
    if recorder.best_weights is not None:
        model.set_weights(recorder.best_weights)
    elif (run_dir / BEST_WEIGHTS).is_file():
        model.load_weights(run_dir / BEST_WEIGHTS)
    if checkpoints:
        tmp = run_dir / f".tmp-{MODEL_FILE}"
        model.save(tmp)
        tmp.replace(run_dir / MODEL_FILE)
    versions = {"keras": keras.__version__, "backend": keras.config.backend()}
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    metrics = results.run_metrics(
        framework="keras",
        versions=versions,
        device=f"gpu x{gpus}" if gpus else "cpu",
        cfg=to_dict(cfg),
        fold=fold,
        fold_hash=fold_hash,
        preprocess=faces.key,
        pretrained=pretrained,
        input_size=input_size,
        log_rows=recorder.log.rows,
        best=recorder.best,
        train_seconds=train_seconds,
    )
    metrics, _ = results.evaluate_fold(
        lambda idx: outputs(model, faces, idx),
        faces,
        parts,
        cfg.loss.name,
        metrics,
        run_dir,
        keep_calibration=lambda cal: results.atomic_write_json(run_dir / results.CALIBRATION, cal),
        mirrored=lambda idx: outputs(model, faces, idx, mirror=True),
    )
    return metrics


def main(argv: list[str] | None = None) -> int:
    try:
        plan = runner.plan_run(runner.parse_cli(sys.argv[1:] if argv is None else argv), "keras")
    except runner.HelpRequested:
        print(runner.train_usage("tf_impl.train"))
        return 0
    except runner.UsageError as exc:
        return runner.fail(str(exc))
    fold_hash = runner.write_folds(plan)
    print(runner.describe(plan))
    try:
        metrics = fit(plan.cfg, plan.faces, plan.fold, fold_hash, plan.run_dir)
    except runner.ResumeError as exc:
        return runner.fail(str(exc))
    print(runner.report(metrics, plan.run_dir / MODEL_FILE, plan.run_dir / results.PREDICTIONS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
