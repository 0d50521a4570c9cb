"""Recipe trials on validation people: variants of a training preset side by side.

Each variant is the preset plus ``key=value`` overrides, trained in its own run folder under
``--out`` (resumed where a run was cut short, skipped when finished). The table and the JSON hold
the **validation people's** figures only (MAE, MAE by age band and their mean, ages 0-9 and
70+, ±1 std and 90 % coverage after calibration): a recipe is chosen on them, never on a test
set, whose figures stay in each run's own ``metrics.json``.

Usage:
    python -m benchmarks.recipe pretrain-aaf-appa --out /data/trials \\
        --variant base --variant px128=data.size=128 \\
        --variant sigma2=loss.label_sigma=2 --variant balance=optim.band_balance=0.5 \\
        [--framework torch|keras] [--shard i/n] [--report-only] [-- key=value ...]

Overrides after ``--`` apply to every variant. Writes
``benchmarks/results/recipe-PRESET-FRAMEWORK.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agezoo.backends import TRAINING, backend
from benchmarks.run import parse_shard
from common import results

OUT = Path(__file__).parent / "results"


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME[=key=value[,key=value...]]`` -> (name, overrides)."""
    name, _, rest = text.partition("=")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--variant {text!r}: the name must be letters, digits, - or _")
    overrides = []
    for item in filter(None, rest.split(",")):
        if "=" not in item:
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value")
        overrides.append(item)
    return name, overrides


def row_of(name: str, overrides: list[str], run_dir: Path) -> dict:
    """One variant's validation figures, from its finished run."""
    metrics = json.loads((run_dir / results.METRICS).read_text())
    val = metrics.get("val")
    if val is None:
        raise ValueError(f"{run_dir}: no validation figures in {results.METRICS} (an older run?)")
    bands = val["mae_by_band"]
    after = (metrics.get("calibration") or {}).get("val_after", {})
    return {
        "variant": name,
        "overrides": overrides,
        "run": str(run_dir),
        "val_n": val["n"],
        "val_mae": round(val["mae"], 3),
        "val_band_mean": round(val["band_mean"], 3),
        "val_mae_0_9": round(bands["0-9"][0], 3) if "0-9" in bands else None,
        "val_mae_70_plus": round(bands["70+"][0], 3) if "70+" in bands else None,
        "val_mae_by_band": bands,
        "val_coverage_1std": after.get("within_1std"),
        "val_coverage_90": after.get("within_90"),
        "best_epoch": metrics["best_epoch"] + 1,
        "epochs": metrics["epochs_run"],
        "train_minutes": round(metrics["train_seconds"] / 60, 1),
        "val_mae_by_epoch": [
            round(float(r["val_mae"]), 3)
            for r in results.CsvLog(run_dir / results.LOG, keep=True).rows
        ],
    }


def table(rows: list[dict]) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f} %"

    def num(v):
        return "–" if v is None else f"{v:.2f}"

    lines = [
        "| variant | overrides | val MAE | mean of bands | 0-9 | 70+ | ±1 std / 90 % "
        "| best / epochs | min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {' '.join(r['overrides']) or '(preset)'} | {r['val_mae']:.3f} "
            f"| {r['val_band_mean']:.3f} | {num(r['val_mae_0_9'])} | {num(r['val_mae_70_plus'])} "
            f"| {pct(r['val_coverage_1std'])} / {pct(r['val_coverage_90'])} "
            f"| {r['best_epoch']} / {r['epochs']} | {r['train_minutes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    common = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--variant", action="append", required=True, help="NAME[=k=v,k=v]")
    parser.add_argument("--framework", choices=TRAINING, default="torch")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs (not git)")
    parser.add_argument("--shard", default="0/1", help="train every n-th variant only: i/n")
    parser.add_argument("--report-only", action="store_true", help="train nothing")
    parser.add_argument("--json", type=Path, help="results file (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
        shard = parse_shard(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        parser.error(f"variant names must differ: {names}")
    train = backend(args.framework).module("train")
    for k, (name, overrides) in enumerate(variants):
        run_dir = args.out / f"{args.framework}-{name}"
        if args.report_only or k % shard[1] != shard[0] or (run_dir / results.METRICS).is_file():
            continue
        resume = ["resume=true"] if (run_dir / results.CONFIG).is_file() else []
        print(f"variant {name}: {' '.join(overrides) or '(the preset)'} -> {run_dir}", flush=True)
        code = train.main([args.preset, f"run_dir={run_dir}", *common, *overrides, *resume])
        if code:
            print(f"error: variant {name} failed (exit {code}); the others go on", file=sys.stderr)
    rows, missing = [], []
    for name, overrides in variants:
        run_dir = args.out / f"{args.framework}-{name}"
        if (run_dir / results.METRICS).is_file():
            rows.append(row_of(name, overrides, run_dir))
        else:
            missing.append(name)
    if rows:
        out = args.json or OUT / f"recipe-{Path(args.preset).stem}-{args.framework}.json"
        results.atomic_write_json(
            out,
            {
                "preset": args.preset,
                "framework": args.framework,
                "common_overrides": common,
                "chosen_on": "validation people only",
                "variants": rows,
                "missing": missing,
                **results.environment(args.framework, {}, ""),
            },
        )
        print(table(rows))
        print(f"wrote {out}")
    if missing:
        print(f"not finished yet: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
