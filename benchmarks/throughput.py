"""Training and inference throughput: the bare model vs the real pipeline, per framework.

* bare: the model alone on random tensors already on the device (train: forward, loss,
  backward, optimiser step; infer: forward), timed after warm-up, device-synchronised;
* pipeline: the project's real loop end to end, from the uint8 cache: slicing, augmentation,
  normalisation, loss, logging (train: ``torch_impl.train.fit`` / ``tf_impl.train.fit``;
  infer: their ``predict``).

The ratio pipeline / bare is the pipeline efficiency (goal ≥ 0.95). Compilation (XLA, tracing,
cuDNN autotuning) happens on the first calls of each shape, so neither side is timed until its
warm-up has settled: at least ``--warmup`` repeats (two at the fewest), and on until a repeat is
no more than 5 % faster than the one before it (``settle``). The two sides take turns, one
repeat each (training: a bare repeat after each epoch of the real loop), so that a drift in the
machine's pace meets both alike. Each figure is then the median of ``--repeats`` timed repeats
of the same number of images on both sides, on the same rounds, with their spread, and
every efficiency carries a flag (``sanity``): ``ok``, or ``suspect`` with the reasons. Usage:

    python -m benchmarks.throughput --framework torch --model resnet50 --size 112
    python -m benchmarks.throughput --framework keras --model resnet34 --size 112

Writes ``benchmarks/results/throughput-FRAMEWORK-MODEL-SIZEpx-MODE-PRECISION.json``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import (  # noqa: F401  (re-exported)
    EFFICIENCY_RANGE,
    MAX_SPREAD,
    SETTLE_TOL,
    paired_ratios,
    sanity,
    settle,
    summarise,
    timed_summary,
)
from common import results
from common.config import load_config, to_dict
from common.losses import num_outputs
from common.prepare import build_folds
from common.splits import folds_hash
from common.synthetic import make_synthetic

OUT = Path(__file__).parent / "results"
MAX_WARMUP = 8  # warm-up repeats at the most (bare and inference pipeline)
SPARE_EPOCHS = 4  # training pipeline: epochs beyond the least warm-up, for a late settling
# (a PyTorch pipeline on a CPU ran 17, 23, 43, 47, 45, 46, 48 img/s: settled only at its 5th)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


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


def _train_turns(args, fit, bare_step, sync) -> tuple[dict, dict]:
    """(bare, pipeline) training timings, the two taking turns as in ``_timed``.

    The pipeline is the real loop (``fit``), timed per epoch from its log; one bare repeat of
    ``--steps`` steps runs after each of its epochs (``fit(on_epoch_end=...)``), so that a drift
    in the machine's pace meets both sides alike. Both are timed on the same rounds: those after
    the later of the two sides' warm-ups.
    """
    cfg = _config(args, max(2, args.warmup) + SPARE_EPOCHS + args.repeats)
    faces = _faces(args)
    folds = build_folds(cfg.protocol, faces.persons)
    images = args.steps * args.batch
    bare: list[float] = []

    def bare_repeat(epoch: int) -> None:
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            bare_step()
        sync()
        bare.append(images / (time.perf_counter() - t0))

    with tempfile.TemporaryDirectory() as run_dir:
        # No checkpoints: their saves are not timed, but cost the check minutes of wall time.
        fit(
            cfg, faces, folds[0], folds_hash(folds), run_dir,
            progress=False, checkpoints=False, on_epoch_end=bare_repeat,
        )  # fmt: skip
        rows = results.CsvLog(Path(run_dir) / results.LOG, keep=True).rows
    rates = [float(r["train_images_per_s"]) for r in rows]
    seen = {round(float(r["train_images_per_s"]) * float(r["train_seconds"])) for r in rows}
    sides = {"bare": (bare, images), "pipeline": (rates, seen.pop() if len(seen) == 1 else -1)}
    found = {name: settle(r, args.warmup, args.repeats) for name, (r, _) in sides.items()}
    warm = max(w for _, w, _ in found.values())
    return tuple(
        timed_summary(r, r[warm : warm + args.repeats], warm, found[name][2], n)
        for name, (r, n) in sides.items()
    )


def _timed(sides: dict, sync, args) -> dict[str, dict]:
    """Timings of each side, ``name -> (call, calls per repeat, images per repeat)``.

    The sides take turns, one repeat each: warm-up rounds until every side has settled (or
    ``MAX_WARMUP`` more than the least), then ``--repeats`` timed rounds, so that a change in
    the machine's pace meets every side alike.
    """
    rates: dict[str, list[float]] = {name: [] for name in sides}

    def one_round():
        for name, (call, calls, images) in sides.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            sync()
            rates[name].append(images / (time.perf_counter() - t0))

    def settled(name: str) -> bool:
        return settle(rates[name], args.warmup, 0)[2]

    warm = 0
    while warm < max(2, args.warmup) + MAX_WARMUP:
        one_round()
        warm += 1
        if all(settled(name) for name in sides):
            break
    done = {name: settled(name) for name in sides}
    for _ in range(args.repeats):
        one_round()
    return {
        name: timed_summary(rates[name], rates[name][warm:], warm, done[name], sides[name][2])
        for name in sides
    }


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
    # The pipeline's memory layout, which picks other CPU kernels: in inference, to_input's
    # permute of NHWC images leaves them channels-last in memory (a plain NCHW input made the
    # pipeline look 1.2x faster than MobileNetV2 alone); in training, augment hands it NCHW
    # memory; on CUDA both are made channels-last.
    if args.mode == "infer" or cuda:
        x = torch.randn(args.batch, args.size, args.size, 3, device=device).permute(0, 3, 1, 2)
    else:
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 70, (args.batch,), device=device).float()
    loss_fn = make_loss("mean_variance")
    images = args.steps * args.batch
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
        bare, pipeline = _train_turns(args, train.fit, train_step, sync)
    else:
        model.eval()
        cfg = _config(args, 1)
        faces = _faces(args)
        fold = build_folds(cfg.protocol, faces.persons)[0]
        trainer = train.Trainer(cfg, faces, fold, device)
        idx = np.arange(images) % len(faces)
        sides = {
            "bare": (infer_step, args.steps, images),
            "pipeline": (lambda: trainer.predict(idx, args.batch), 1, images),
        }
        bare, pipeline = _timed(sides, sync, args).values()
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
    images = args.steps * args.batch

    def sync():
        return None

    if args.mode == "train":
        # The pipeline's first epoch comes first, as in a real run: bare steps before it would
        # leave glibc's allocator warmed up and hide what a fresh training process pays.
        bare, pipeline = _train_turns(args, train.fit, lambda: model.train_on_batch(x, y), sync)
    else:
        faces = _faces(args)
        idx = np.arange(images) % len(faces)
        sides = {
            "bare": (lambda: model.predict_on_batch(x), args.steps, images),
            "pipeline": (
                lambda: train.predict(model, faces, idx, "mean_variance", args.batch),
                1,
                images,
            ),
        }
        bare, pipeline = _timed(sides, sync, args).values()
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
    parser.add_argument("--size", type=_positive, default=112)
    parser.add_argument("--batch", type=_positive, default=32)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="mixed precision applies on GPUs only",
    )
    parser.add_argument("--steps", type=_positive, default=8, help="batches per timed repeat")
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up repeats at the least (two at the fewest)"
    )
    parser.add_argument("--repeats", type=_positive, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    run = torch_bench(args) if args.framework == "torch" else keras_bench(args)
    bare, pipe = run["bare"], run["pipeline"]
    efficiency = pipe["images_per_s"] / bare["images_per_s"]
    flag, reasons = sanity(bare, pipe)
    result = {
        "framework": args.framework,
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "mode": args.mode,
        "precision": args.precision,
        "steps": args.steps,
        "min_warmup": max(2, args.warmup),
        "repeats": args.repeats,
        "bare_images_per_s": bare["images_per_s"],
        "pipeline_images_per_s": pipe["images_per_s"],
        "efficiency": round(efficiency, 3),
        "flag": flag,
        "flag_reasons": reasons,
        "bare": bare,
        "pipeline": pipe,
        **results.environment(args.framework, run["versions"], run["device"]),
        "config": to_dict(_config(args, 1)),
    }
    name = (
        f"throughput-{args.framework}-{args.model}-{args.size}px-{args.mode}-{args.precision}.json"
    )
    results.atomic_write_json(args.out / name, result)
    print(
        f"{args.framework:6s} {args.model:13s} {args.size:4d}px b{args.batch:<4d} {args.mode:5s} "
        f"{args.precision:5s} bare {bare['images_per_s']:8.1f} img/s "
        f"(spread {bare['spread']:.0%})  pipeline {pipe['images_per_s']:8.1f} img/s "
        f"(spread {pipe['spread']:.0%})  efficiency {efficiency:.3f} {flag}  ({run['device']}; "
        f"warm-up {bare['warmup_repeats']}/{pipe['warmup_repeats']} repeats)"
        + "".join(f"\n    {flag}: {r}" for r in reasons)
    )
    return result


if __name__ == "__main__":
    main()
