"""The plots of a benchmark report (``benchmarks.report``), written as PNGs beside it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PAPER_MAE = 4.10  # Pan et al., CVPR 2018: FG-NET LOPO, Mean-Variance loss


def scatter_grid(
    panels: list[tuple[str, np.ndarray, np.ndarray, float]],
    xlabel: str,
    ylabel: str,
    path: Path,
    size: float = 10,
    alpha: float = 1.0,
) -> Path:
    """One scatter per panel ``(title, x, y, top)`` against the diagonal, three to a row."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax, (title, x, y, top) in zip(axes.flat, panels, strict=False):
        ax.scatter(x, y, s=size, alpha=alpha)
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=xlabel, ylabel=ylabel, title=title)
        ax.title.set_fontsize(8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return _save(fig, path)


def report_plots(out: Path, cells: dict, pairs) -> list[Path]:
    """CS curves, MAE by decade, predicted vs true ages, reliability and paired folds."""
    paths = []
    fig, ax = plt.subplots(figsize=(7, 5))
    for cid, s in sorted(cells.items()):
        ts = sorted(s["cs_curve"])
        ax.plot(ts, [s["cs_curve"][t] for t in ts], marker="o", ms=3, label=cid)
    ax.set(
        xlabel="error threshold θ (years)",
        ylabel="CS(θ): fraction within θ",
        title="Cumulative score",
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "cs_curves.png"))

    decades = sorted(
        {d for s in cells.values() for d in s["by_decade"]}, key=lambda d: int(d.split("-")[0])
    )
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.8 / max(1, len(cells))
    for i, (cid, s) in enumerate(sorted(cells.items())):
        vals = [s["by_decade"].get(d, (np.nan, 0))[0] for d in decades]
        ax.bar(np.arange(len(decades)) + i * width, vals, width, label=cid)
    ax.axhline(PAPER_MAE, color="k", ls="--", lw=1, label=f"paper overall MAE {PAPER_MAE}")
    ax.set_xticks(np.arange(len(decades)) + 0.4 - width / 2, decades)
    ax.set(xlabel="true age", ylabel="MAE (years)", title="MAE by age decade")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "mae_by_decade.png"))

    top = max(max(s["true"].max(), s["pred"].max()) for s in cells.values()) + 2
    panels = [
        (f"{cid}\nMAE {s['mae']:.2f}", s["true"], s["pred"], top)
        for cid, s in sorted(cells.items())
    ]
    paths.append(
        scatter_grid(panels, "true age", "predicted age", out / "scatter.png", size=6, alpha=0.4)
    )

    reliable = {c: s["calibration"] for c, s in sorted(cells.items()) if s["calibration"]}
    reliable = {c: r for c, r in reliable.items() if "reliability_after" in r}
    if reliable:
        fig, ax = plt.subplots(figsize=(6, 5.5))
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        for i, (cid, r) in enumerate(reliable.items()):
            color = f"C{i % 10}"
            levels = sorted(r["reliability_after"], key=float)
            x = [float(v) for v in levels]
            ax.plot(x, [r["reliability_before"][v] for v in levels], ":", color=color, marker=".")
            ax.plot(
                x,
                [r["reliability_after"][v] for v in levels],
                "-",
                color=color,
                marker="o",
                ms=3,
                label=f"{cid} (T {r['temperature_median']:.2f})",
            )
        ax.set(
            xlabel="nominal coverage of the central interval",
            ylabel="observed coverage on test people",
            title="Reliability: dotted = before, solid = after calibration",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / "reliability.png"))

    if pairs:
        panels = [
            (
                f"{label}\nmean diff {pr['mean_diff']:+.3f}",
                pr["b"],
                pr["a"],
                max(max(pr["a"]), max(pr["b"])) * 1.05 + 0.5,
            )
            for label, pr in pairs
        ]
        paths.append(
            scatter_grid(panels, "Keras fold MAE", "PyTorch fold MAE", out / "paired_folds.png")
        )
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
