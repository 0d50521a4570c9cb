"""Benchmark report: tables and plots from a benchmark folder's results.

    python -m benchmarks.report runs/bench-NAME

Writes ``report.md`` and PNG plots into the folder. Refuses to put side by side results whose
fold hashes or preprocessing hashes differ.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from benchmarks.derived import derived_cells
from benchmarks.plots import PAPER_MAE, report_plots
from common import metrics, results
from common.losses import LOSSES


def load_results(out: Path) -> dict[str, list[dict]]:
    """``{cell id: [fold results]}``; raises ValueError on mixed folds or preprocessing."""
    by_cell: dict[str, list[dict]] = defaultdict(list)
    hashes, preps = set(), set()
    for path in sorted((Path(out) / "results").glob("*/*.json")):
        data = results.read_checked_json(path)  # a damaged file is named, never averaged in
        hashes.add(data["fold_hash"])
        preps.add(data["preprocess"])
        by_cell[data["cell"]].append(data)
    if len(hashes) > 1 or len(preps) > 1:
        raise ValueError(
            f"{out}: results were made on {len(hashes)} fold files and "
            f"{len(preps)} preprocessings; they cannot be compared side by side"
        )
    if not by_cell:
        raise ValueError(f"{out}: no results yet")
    return dict(by_cell)


def summarise(folds: list[dict]) -> dict:
    p = {
        k: np.concatenate([np.asarray(f["predictions"][k]) for f in folds])
        for k in ("true_age", "expected_age", "std")
    }
    err = np.abs(p["expected_age"] - p["true_age"])
    # FG-NET has few people over 40; the old are where pretraining should help most.
    old = (p["true_age"] >= 40) & (p["true_age"] < 70)
    fold_mae = np.array([f["fold_mae"] for f in folds], float)
    std_ok = np.isfinite(p["std"]).all()
    first = folds[0]
    return {
        "n_folds": len(folds),
        "n_images": int(len(err)),
        "mae": float(err.mean()),
        "fold_mae_mean": float(fold_mae.mean()),
        "fold_mae_std": float(fold_mae.std()),
        "cs5": metrics.cumulative_score(p["expected_age"], p["true_age"], 5),
        "cs10": metrics.cumulative_score(p["expected_age"], p["true_age"], 10),
        "cs_curve": metrics.cs_curve(p["expected_age"], p["true_age"]),
        "by_decade": metrics.mae_by_decade(p["expected_age"], p["true_age"]),
        "mae_40_69": float(err[old].mean()) if old.any() else math.nan,
        "n_40_69": int(old.sum()),
        "mean_std": float(p["std"].mean()) if std_ok else math.nan,
        "std_err_corr": metrics.correlation(p["std"], err) if std_ok else math.nan,
        "train_images_per_s": float(
            np.median([f.get("train_images_per_s") or np.nan for f in folds])
        ),
        "eval_images_per_s": float(
            np.median([f.get("eval_images_per_s") or np.nan for f in folds])
        ),
        # frozen cells time the backbone over every image; the others time each fold's test set
        "eval_images_timed": (
            len(p["true_age"])
            if "feature_seconds" in first
            else int(np.median([len(f["predictions"]["true_age"]) for f in folds]))
        ),
        "wall_seconds": float(
            sum(f["train_seconds"] + f.get("eval_seconds", 0) for f in folds)
            + first.get("feature_seconds", 0)
        ),
        "device": first["device"],
        "pretrained": first["pretrained"],
        "framework": first["framework"],
        "model": first["model"],
        "loss": first["loss"],
        "weights": first["weights"],
        "true": p["true_age"],
        "pred": p["expected_age"],
        "fold_maes": {f["fold"]: f["fold_mae"] for f in folds},
        "calibration": pool_calibration(folds),
    }


def pool_calibration(folds: list[dict]) -> dict | None:
    """Test coverage before / after the per-fold temperatures, pooled over all test images."""
    cals = [
        f["calibration"] for f in folds if f.get("calibration") and f["calibration"].get("n_test")
    ]
    if not cals:
        return None
    n = np.array([c["n_test"] for c in cals], float)

    def pooled(key: str) -> dict[str, float]:
        return {k: float(np.dot([c[key][k] for c in cals], n) / n.sum()) for k in cals[0][key]}

    out = {
        "n_folds": len(cals),
        "temperature_median": float(np.median([c["temperature"] for c in cals])),
        "before": pooled("test_before"),
        "after": pooled("test_after"),
    }
    if all("test_reliability_before" in c for c in cals):
        out["reliability_before"] = pooled("test_reliability_before")
        out["reliability_after"] = pooled("test_reliability_after")
    return out


def paired(a: dict, b: dict) -> dict | None:
    """Per-fold MAE difference a − b over the folds both have, with a Wilcoxon p-value."""
    common = sorted(set(a["fold_maes"]) & set(b["fold_maes"]))
    if len(common) < 2:
        return None
    diff = np.array([a["fold_maes"][f] - b["fold_maes"][f] for f in common])
    p = math.nan
    if np.any(diff != 0):
        p = float(wilcoxon(diff).pvalue)
    return {
        "n": len(common),
        "mean_diff": float(diff.mean()),
        "std_diff": float(diff.std()),
        "median_diff": float(np.median(diff)),
        "p": p,
        "a": [a["fold_maes"][f] for f in common],
        "b": [b["fold_maes"][f] for f in common],
    }


def _fmt(v, digits=2):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


# Fewer images than this per timed call measure the call's overhead, not the network.
MIN_TIMED_IMAGES = 64


def _infer_rate(s: dict) -> str:
    return _fmt(s["eval_images_per_s"], 0) if s["eval_images_timed"] >= MIN_TIMED_IMAGES else "–"


def write_report(out: Path) -> Path:
    out = Path(out)
    by_cell = load_results(out)
    extra, derived_pairs = derived_cells(by_cell)
    cells = {cid: summarise(folds) for cid, folds in {**by_cell, **extra}.items()}
    preset = (
        json.loads((out / "preset.json").read_text()) if (out / "preset.json").is_file() else {}
    )
    n_folds_total = len(json.loads((out / results.FOLDS).read_text())["folds"])
    fold_hash = next(iter(by_cell.values()))[0]["fold_hash"]
    lines = [f"# Benchmark report: {preset.get('name', out.name)}", ""]
    if preset.get("description"):
        lines += [preset["description"].strip(), ""]
    lines += [
        f"Fold file sha256 `{fold_hash[:16]}…`, {n_folds_total} folds; every cell below "
        "was run on it. Reference: the paper's FG-NET LOPO MAE "
        f"**{PAPER_MAE:.2f}** (Pan et al., CVPR 2018, Mean-Variance loss).",
        "",
        "| cell | folds | MAE (all images) | fold MAE mean ± std | CS(5) | CS(10) | "
        "mean pred. std | corr(std, err) | train img/s | infer img/s | wall time | device | "
        "pretrained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cid, s in sorted(cells.items()):
        done = f"{s['n_folds']}/{n_folds_total}" + (
            "" if s["n_folds"] == n_folds_total else " (partial)"
        )
        lines.append(
            f"| {cid} | {done} | **{_fmt(s['mae'])}** | {_fmt(s['fold_mae_mean'])} ± "
            f"{_fmt(s['fold_mae_std'])} | {_fmt(s['cs5'], 3)} | {_fmt(s['cs10'], 3)} | "
            f"{_fmt(s['mean_std'])} | {_fmt(s['std_err_corr'])} | "
            f"{_fmt(s['train_images_per_s'], 0)} | {_infer_rate(s)} | "
            f"{s['wall_seconds'] / 60:.1f} min | {s['device']} | {s['pretrained']} |"
        )
    untimed = {cid: s["eval_images_timed"] for cid, s in cells.items() if _infer_rate(s) == "–"}
    if untimed:
        lines += [
            "",
            'Infer img/s "–": each fold timed its test person alone (median '
            f"{int(np.median(list(untimed.values())))} images per fold), which measures the "
            "call's overhead rather than the network; `benchmarks/throughput.py` and "
            "`benchmarks.predict_speed` measure inference speed.",
        ]
    decades = sorted(
        {d for s in cells.values() for d in s["by_decade"]}, key=lambda d: int(d.split("-")[0])
    )
    lines += [
        "",
        "## MAE by age decade",
        "",
        "| cell | " + " | ".join(f"{d} (n)" for d in decades) + " | 40-69 (n) |",
        "|---|" + "---|" * (len(decades) + 1),
    ]
    for cid, s in sorted(cells.items()):
        row = [
            f"{_fmt(s['by_decade'][d][0])} ({s['by_decade'][d][1]})" if d in s["by_decade"] else "–"
            for d in decades
        ]
        row.append(f"**{_fmt(s['mae_40_69'])}** ({s['n_40_69']})")
        lines.append(f"| {cid} | " + " | ".join(row) + " |")
    calibrated = {cid: s["calibration"] for cid, s in sorted(cells.items()) if s["calibration"]}
    if calibrated:
        lines += [
            "",
            "## Uncertainty calibration (test folds)",
            "",
            "A temperature is fitted per fold on that fold's validation people so that ±1 std "
            "and the 90 % interval cover their true ages at the nominal rates (68.3 %, 90 %); "
            "the test people's coverage is shown before and after, pooled over all test images.",
            "",
            "| cell | folds | median T | within ±1 std: before → after | "
            "within 90 % interval: before → after |",
            "|---|---|---|---|---|",
        ]
        for cid, c in calibrated.items():
            b, a = c["before"], c["after"]
            lines.append(
                f"| {cid} | {c['n_folds']} | {c['temperature_median']:.2f} | "
                f"{b['within_1std']:.1%} → **{a['within_1std']:.1%}** | "
                f"{b['within_90']:.1%} → **{a['within_90']:.1%}** |"
            )
    pairs = _framework_pairs(cells)
    lines += ["", "## Frameworks side by side (paired per fold)", ""]
    if pairs:
        lines += [
            "| architecture / loss / weights | folds | MAE torch − keras: mean ± std | "
            "median | Wilcoxon p |",
            "|---|---|---|---|---|",
        ]
        for label, pr in pairs:
            lines.append(
                f"| {label} | {pr['n']} | {pr['mean_diff']:+.3f} ± {pr['std_diff']:.3f} "
                f"| {pr['median_diff']:+.3f} | {_fmt(pr['p'], 3)} |"
            )
    else:
        lines.append("No architecture ran in both frameworks here.")
    lines += ["", "## Test-time flip and the two frameworks together (paired per fold)", ""]
    if derived_pairs:
        lines += [
            "`+flip`: each face's outputs averaged with its mirror image's, as `agezoo predict` "
            "does. `ensemble-…`: the PyTorch and Keras cells' distributions averaged per fold. "
            "Each is calibrated on the fold's validation people like a model of its own.",
            "",
            "| comparison | folds | MAE a − b: mean ± std | median | Wilcoxon p |",
            "|---|---|---|---|---|",
        ]
        for a, b in derived_pairs:
            if pr := paired(cells[a], cells[b]):
                lines.append(
                    f"| {a} − {b} | {pr['n']} | {pr['mean_diff']:+.3f} ± {pr['std_diff']:.3f} "
                    f"| {pr['median_diff']:+.3f} | {_fmt(pr['p'], 3)} |"
                )
    else:
        lines.append("No cell kept the outputs these need (results made before they were kept).")
    ablations = _loss_pairs(cells)
    lines += ["", "## Loss ablation (paired per fold)", ""]
    if ablations:
        lines += [
            "| framework / model / weights | comparison | folds | MAE difference: mean ± std "
            "| Wilcoxon p |",
            "|---|---|---|---|---|",
        ]
        for label, comp, pr in ablations:
            lines.append(
                f"| {label} | {comp} | {pr['n']} | {pr['mean_diff']:+.3f} ± "
                f"{pr['std_diff']:.3f} | {_fmt(pr['p'], 3)} |"
            )
    else:
        lines.append("No cell ran more than one loss here.")
    plots = report_plots(out, cells, pairs)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _framework_pairs(cells):
    out = []
    for s in (cells[c] for c in sorted(cells)):
        if s["framework"] != "torch":
            continue
        # Keras from the PyTorch AAF weights ported starts from the same numbers as PyTorch.
        for keras_weights, label in [
            (s["weights"], s["weights"]),
            (f"{s['weights']}-torch", f"{s['weights']} (Keras: the PyTorch weights ported)"),
        ]:
            twin = f"keras-{s['model']}-{s['loss']}-{keras_weights}"
            if twin in cells and (pr := paired(s, cells[twin])):
                out.append((f"{s['model']} / {s['loss']} / {label}", pr))
    return out


def _loss_pairs(cells):
    out = []
    for s in (cells[c] for c in sorted(cells)):
        if s["loss"] != "mean_variance":
            continue
        for other in (name for name in LOSSES if name != "mean_variance"):
            twin = f"{s['framework']}-{s['model']}-{other}-{s['weights']}"
            if twin in cells and (pr := paired(s, cells[twin])):
                out.append(
                    (
                        f"{s['framework']} / {s['model']} / {s['weights']}",
                        f"mean_variance − {other}",
                        pr,
                    )
                )
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Tables and plots (report.md, PNGs) from a benchmark folder's results.",
    )
    parser.add_argument("folder", type=Path, help="a benchmark folder, e.g. runs/bench-NAME")
    args = parser.parse_args(argv)
    try:
        print(write_report(args.folder))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
