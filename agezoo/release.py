"""Release a trained run as the zoo's model: ONNX in ``weights/released/`` with its model card.

Usage:
    python -m agezoo.pretrain --kind aaf-appa           (the weights it starts from)
    python -m agezoo.pretrain --kind release            (trains runs/release-torch-mobilenet_v2)
    python -m agezoo.release runs/release-torch-mobilenet_v2 [--no-default]
    python -m agezoo.pretrain --kind release --framework keras model.weights=aaf-appa-torch
    python -m agezoo.release runs/release-keras-mobilenet_v2 --no-default
    python -m agezoo.release --ensemble runs/release-torch-mobilenet_v2 \\
        runs/release-keras-mobilenet_v2        (the two as one; the default if validation says)
    python -m benchmarks.heldout NAME                    (held-out figures beside the peer)
    python -m agezoo.release --card-only                 (redraws the cards with those figures)

The final variant (``make release-all``) is the same recipe trained on the held-out people too:
``python -m agezoo.pretrain --kind release-all`` then ``python -m agezoo.release
runs/release-all-torch-mobilenet_v2``. Each file replaces its held-out variant, whose held-out
figures its card shows (``--heldout-of SHA256`` names another); it is never scored on them.

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

import weights
from agezoo.cards import (
    ENSEMBLE_SUFFIX,
    clear_defaults,
    held_out_variant,
    member_name,
    released_dir,
    write_card,
    write_ensemble_card,
)
from agezoo.pretrain import DATA, default_run_dir, initialised_from, read_run, run_card
from common import results
from common.config import load_config

RELEASE_BUDGET_MB = 25.0  # all released files together
INITIALISED_FROM = {
    "aaf": "AAF-pretrained MobileNetV2 (make pretrain), itself from ImageNet",
    "aaf-torch": "the PyTorch AAF-pretrained MobileNetV2 (make pretrain), ported to Keras; "
    "itself from ImageNet",
    "aaf-appa": "AAF + APPA-pretrained MobileNetV2 (agezoo.pretrain --kind aaf-appa), itself "
    "from ImageNet",
    "aaf-appa-torch": "the PyTorch AAF + APPA-pretrained MobileNetV2 (agezoo.pretrain --kind "
    "aaf-appa), ported to Keras; itself from ImageNet",
}
TERMS = {
    "All-Age-Faces": "research use only (https://github.com/JingchunCheng/All-Age-Faces-Dataset)",
    "APPA-REAL / ChaLearn LAP 2016": "non-commercial research use (ChaLearn LAP 2016 terms)",
    "FG-NET": "research use only (FG-NET ageing database terms)",
    "ImageNet (MobileNetV2 backbone, via torchvision)": "BSD-3-Clause code; ImageNet terms",
}

NEVER_SCORE_ON = {
    "release": "FG-NET (it has seen every person), All-Age-Faces' train.txt people and APPA's "
    "train split",
    "release-all": "FG-NET, All-Age-Faces and APPA train + valid (it has seen every person of "
    "them but its validation people)",
}


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


def release(
    run_dir: str | Path,
    dest: str | Path | None = None,
    default: bool = True,
    heldout_of: str | None = None,
) -> dict:
    """Exports a finished PyTorch or Keras run to ONNX under ``dest`` and writes its card.

    A final run (``--kind release-all``: the held-out people trained on too) has no held-out
    figures of its own; its card shows those of its held-out variant, the released file of the
    same recipe without them: ``heldout_of`` (a sha256 or its first 8+ digits), by default the
    file this release replaces (``held_out_variant``).
    """
    run_dir, dest = Path(run_dir), Path(dest or released_dir())
    metrics, cfg = read_run(run_dir)
    framework = metrics["framework"]
    arch, size = cfg["model"]["name"], cfg["data"]["size"]
    name = member_name(framework, arch)
    final = bool(cfg["protocol"].get("train_on_test"))
    older = weights.released_cards(dest).get(name)  # the same model, replaced by this release
    variant = held_out_variant(older, heldout_of) if final else None
    kind = "release-all" if final else "release"
    dest.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    tmp = dest / f".release-{framework}-{arch}.onnx"
    report = export_run(run_dir, framework, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    stem = f"agezoo-{arch}-{size}px-{sha[:8]}"
    onnx_file = dest / f"{stem}.onnx"
    tmp.replace(onnx_file)
    onnx_file.chmod(0o644)
    replaced = older["weights_file"] if older else None
    others = [p for p in dest.glob("*.onnx") if p.name not in (onnx_file.name, replaced)]
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
        "data": DATA[kind],
        "terms": TERMS,
        "never_score_on": NEVER_SCORE_ON[kind],
        "trained_on_test": final,
        "heldout_of": variant,
        "initialised_from": _initialised_from(cfg["model"]["weights"], metrics["pretrained"]),
        "temperature": (metrics.get("calibration") or {}).get("temperature", 1.0),
        "weights_file": onnx_file.name,
        "megabytes": round(onnx_file.stat().st_size / 1e6, 2),
        "export_logit_gap": report["logit_gap"],
        "sha256": sha,
        "command": f"python -m agezoo.pretrain --kind {kind} --framework {framework}"
        + _weights_override(cfg["model"]["weights"])
        # the run folder that command trains into, not this machine's path
        + " && python -m agezoo.release "
        + default_run_dir(kind, framework, cfg["model"]["name"])
        + (f" --heldout-of {variant[:12]}" if variant else ""),
        "date": time.strftime("%Y-%m-%d"),
        "licence": "research and non-commercial use only (the terms of its training data)",
    }
    if older and older["sha256"] != sha:  # one file per name
        for old in dest.glob(Path(older["weights_file"]).stem + ".*"):
            old.unlink()
    if default:
        clear_defaults(dest)
    write_card(dest, card)
    return card


def _weights_override(used: str) -> str:
    """The ``model.weights=`` a run needed beyond the release preset's own (the Keras member
    starts from the PyTorch pretrained weights, ported; a run may start from a pretraining
    run's own ``best.pt``, named by the folder ``agezoo.pretrain`` trains into)."""
    preset = load_config("release").model.weights
    if used == preset:
        return ""
    run = _pretraining_run(used)
    if run:
        return f" model.weights={run[1]}/{Path(used).name}"
    return f" model.weights={Path(used).name}"  # a name, or a file by its name alone


def _pretraining_run(used: str) -> tuple[str, str] | None:
    """(kind, its default run folder) when ``used`` is the best checkpoint of a finished
    ``agezoo.pretrain`` run of a published kind (``aaf``, ``aaf-appa``), else ``None``."""
    path = Path(used)
    if used in INITIALISED_FROM or not path.is_file():
        return None
    try:
        metrics, cfg = read_run(path.parent)
        kind = {"aaf": "aaf", "aaf+appa": "aaf-appa"}.get(cfg["data"]["dataset"])
        return kind and (kind, default_run_dir(kind, metrics["framework"], cfg["model"]["name"]))
    except (OSError, ValueError, KeyError):
        return None


def _initialised_from(used: str, pretrained: bool) -> str:
    if used in INITIALISED_FROM:
        return INITIALISED_FROM[used]
    run = _pretraining_run(used)
    if run:
        return f"{INITIALISED_FROM[run[0]]}: the best checkpoint of its run"
    return initialised_from(Path(used).name if Path(used).is_file() else used, pretrained)


def _sweep(dest: Path) -> None:
    """Removes what a killed release left: an ONNX file that no card names (the card is
    written after the file, so a kill between the two leaves the file alone; the registry
    never serves it, and the release rerun writes it again)."""
    named = {card["weights_file"] for card in weights.released_cards(dest).values()}
    for path in dest.glob("*.onnx"):
        if path.name not in named:
            path.unlink()
    for path in dest.glob(".*release-*"):  # the export's temporary files
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    from agezoo.release_ensemble import DEFAULT_CHOICES, release_ensemble

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished PyTorch or Keras run")
    parser.add_argument("--no-default", action="store_true", help="do not make it the default")
    parser.add_argument(
        "--heldout-of",
        metavar="SHA256",
        help="of a final run (--kind release-all) or an ensemble of final runs: the held-out "
        "variant whose held-out figures the card shows (default: the one it replaces)",
    )
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
                args.ensemble, dest, "none" if args.no_default else args.default, args.heldout_of
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
        card = release(args.run_dir, dest, not args.no_default, args.heldout_of)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"released {card['weights_file']} ({card['megabytes']} MB) in {dest}")
    if card["heldout_of"]:
        print(f"its card shows the held-out figures of {card['heldout_of'][:12]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
