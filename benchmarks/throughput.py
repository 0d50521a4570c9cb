"""Training and inference throughput: the bare model vs the real pipeline, per framework.

* bare: the model alone on random tensors already on the device (train: forward, loss,
  backward, optimiser step; infer: forward), timed after warm-up, device-synchronised;
* pipeline: the project's real loop end to end, from the uint8 cache: slicing, augmentation,
  normalisation, loss, logging (train: ``torch_impl.train.fit`` / ``tf_impl.train.fit``;
  infer: their ``predict``).

The ratio pipeline / bare is the pipeline efficiency (goal ≥ 0.95). Each figure is the median
of ``--repeats`` timed repeats. Usage:

    python -m benchmarks.throughput --framework torch --model resnet50 --size 112
    python -m benchmarks.throughput --framework keras --model resnet34 --size 112

Writes ``benchmarks/results/throughput-FRAMEWORK-MODEL-SIZEpx-MODE-PRECISION.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import results
from common.config import load_config, to_dict
from common.losses import num_outputs
from common.prepare import build_folds
from common.splits import folds_hash
from common.synthetic import make_synthetic

OUT = Path(__file__).parent / "results"


def _config(args, epochs: int):
    return load_config(
        None,
        [
            f"model.name={args.model}",
            "model.weights=none",
            "data.dataset=synthetic",
            f"data.size={args.size}",
            f"optim.batch_size={args.batch}",
            f"optim.epochs={epochs}",
            f"max_steps_per_epoch={args.steps}",
            "tensorboard=false",
            f"amp={args.precision != 'fp32'}",
        ],
    )


def _faces(args):
    # Enough synthetic people that the training part holds `steps` full batches.
    persons = math.ceil(args.steps * args.batch / (0.7 * 8)) + 3
    return make_synthetic(persons, 8, args.size, seed=0)


def _pipeline_train(args, fit) -> list[float]:
    cfg = _config(args, args.warmup + args.repeats)
    faces = _faces(args)
    folds = build_folds(cfg.protocol, faces.persons)
    with tempfile.TemporaryDirectory() as run_dir:
        fit(cfg, faces, folds[0], folds_hash(folds), run_dir, progress=False)
        log = results.CsvLog(Path(run_dir) / results.LOG, keep=True)
    return [float(r["train_images_per_s"]) for r in log.rows[args.warmup :]]


def _timed(step, n_steps: int, batch: int, sync, warmup: int, repeats: int) -> list[float]:
    out = []
    for rep in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        sync()
        if rep >= warmup:
            out.append(n_steps * batch / (time.perf_counter() - t0))
    return out


# ------------------------------------------------------------------ PyTorch


def torch_bench(args) -> dict:
    import torch

    from torch_impl import train
    from torch_impl.losses import make_loss
    from torch_impl.models import create_model

    device = train.resolve_device("auto")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = cuda and args.precision != "fp32"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float16
    model = create_model(args.model, num_outputs("mean_variance"), "none", args.size).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 70, (args.batch,), device=device).float()
    loss_fn = make_loss("mean_variance")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype is torch.float16)

    def train_step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    @torch.no_grad()
    def infer_step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            model(x)

    if args.mode == "train":
        model.train()
        pipeline = _pipeline_train(args, train.fit)  # first, as in a fresh training process
        bare = _timed(train_step, args.steps, args.batch, sync, args.warmup, args.repeats)
    else:
        model.eval()
        bare = _timed(infer_step, args.steps, args.batch, sync, args.warmup, args.repeats)
        cfg = _config(args, 1)
        faces = _faces(args)
        fold = build_folds(cfg.protocol, faces.persons)[0]
        trainer = train.Trainer(cfg, faces, fold, device)
        idx = np.arange(args.steps * args.batch) % len(faces)
        pipeline = _timed(
            lambda: trainer.predict(idx, args.batch), 1, len(idx), sync, args.warmup, args.repeats
        )
    versions = {"torch": torch.__version__}
    return {"bare": bare, "pipeline": pipeline, "device": str(device), "versions": versions}


# ------------------------------------------------------------------ Keras


def keras_bench(args) -> dict:
    import keras

    from tf_impl import train
    from tf_impl.losses import make_loss
    from tf_impl.models import create_model

    gpus = train._gpus()
    if gpus and args.precision != "fp32":
        policy = "mixed_bfloat16" if args.precision == "bf16" else "mixed_float16"
        keras.mixed_precision.set_global_policy(policy)
    model = create_model(args.model, num_outputs("mean_variance"), "none", args.size)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 70, args.batch).astype("float32")
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=make_loss("mean_variance"))

    def sync():
        return None

    if args.mode == "train":
        # The pipeline first, as in a real run: the bare steps before it would leave glibc's
        # allocator warmed up and hide what a fresh training process pays.
        pipeline = _pipeline_train(args, train.fit)
        bare = _timed(
            lambda: model.train_on_batch(x, y),
            args.steps,
            args.batch,
            sync,
            args.warmup,
            args.repeats,
        )
    else:
        bare = _timed(
            lambda: model.predict_on_batch(x),
            args.steps,
            args.batch,
            sync,
            args.warmup,
            args.repeats,
        )
        faces = _faces(args)
        idx = np.arange(args.steps * args.batch) % len(faces)
        pipeline = _timed(
            lambda: train.predict(model, faces, idx, "mean_variance", args.batch),
            1,
            len(idx),
            sync,
            args.warmup,
            args.repeats,
        )
    versions = {"keras": keras.__version__, "backend": keras.config.backend()}
    if keras.config.backend() == "tensorflow":
        import os

        versions["TF_CPU_ALLOCATOR_USE_BFC"] = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")
    return {
        "bare": bare,
        "pipeline": pipeline,
        "device": f"gpu x{gpus}" if gpus else "cpu",
        "versions": versions,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["torch", "keras"], required=True)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="mixed precision applies on GPUs only",
    )
    parser.add_argument("--steps", type=int, default=8, help="batches per timed repeat")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    run = torch_bench(args) if args.framework == "torch" else keras_bench(args)
    bare, pipe = statistics.median(run["bare"]), statistics.median(run["pipeline"])
    result = {
        "framework": args.framework,
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "mode": args.mode,
        "precision": args.precision,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "bare_images_per_s": round(bare, 2),
        "pipeline_images_per_s": round(pipe, 2),
        "efficiency": round(pipe / bare, 3),
        "bare_all": [round(v, 2) for v in run["bare"]],
        "pipeline_all": [round(v, 2) for v in run["pipeline"]],
        **results.environment(args.framework, run["versions"], run["device"]),
        "config": to_dict(_config(args, 1)),
    }
    name = (
        f"throughput-{args.framework}-{args.model}-{args.size}px-{args.mode}-{args.precision}.json"
    )
    results.atomic_write_json(args.out / name, result)
    print(
        f"{args.framework:6s} {args.model:13s} {args.size:4d}px b{args.batch:<4d} {args.mode:5s} "
        f"{args.precision:5s} bare {bare:8.1f} img/s  pipeline {pipe:8.1f} img/s  "
        f"efficiency {pipe / bare:.3f}  ({run['device']})"
    )
    return result


if __name__ == "__main__":
    main()
