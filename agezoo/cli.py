"""The ``agezoo`` command: ``agezoo predict``, ``agezoo models`` and ``agezoo export``.

Usage:
    agezoo predict PHOTO_OR_FOLDER ... [--model RUN_DIR|FILE|NAME] [--json|--csv] [--annotate DIR]
    agezoo models [--json]
    agezoo export RUN_DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from agezoo.backends import BACKENDS, backend_of_run, check_members, load_predictor
from agezoo.output import annotate, as_csv, as_json, as_table
from common.detectors import DETECTORS
from common.inputs import expand_inputs, is_video
from common.predictor import FLIP, ModelNotFoundError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agezoo predict",
        description="Estimate the age of every face in photos, with a calibrated uncertainty.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="photos, videos and/or folders of them (videos: every frame asked for with --every)",
    )
    parser.add_argument(
        "--model",
        "-m",
        action="append",
        help="run folder (best.pt / model.keras), model file (.pt, .keras, .onnx) or registered "
        "age model name; default: the released model in weights/released/ (ONNX). Given several "
        "times: their ensemble (the models' age distributions averaged)",
    )
    parser.add_argument("--onnx", help="an exported .onnx model (runs on onnxruntime alone)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    parser.add_argument("--annotate", metavar="DIR", help="write annotated copies of the photos")
    parser.add_argument(
        "--largest", action="store_true", help="only the largest face of each photo"
    )
    parser.add_argument(
        "--fallback-center",
        action="store_true",
        help="when no face is found, treat the whole photo as a tight face crop",
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=FLIP,
        help="test-time flip: average each face's outputs with its mirror image's (about 2 %% "
        "lower MAE, the model's time doubled; off by default)",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="in videos, every N-th frame (frame index and time in the output)",
    )
    parser.add_argument(
        "--detector",
        choices=list(DETECTORS),
        help="face detector (default: the one the model was trained with)",
    )
    parser.add_argument("--device", default="auto", help="PyTorch device (auto, cpu, cuda)")
    return parser


def predict_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.onnx and args.model:
        print("error: give --model or --onnx, not both", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(args.onnx or args.model, args.device)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.every < 1:
        print(f"error: --every must be at least 1, got {args.every}", file=sys.stderr)
        return 2
    predictor.flip = args.flip
    if args.detector:
        predictor.use_detector(args.detector)
    paths, failures = expand_inputs(args.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = predictor.predict_inputs(
            paths,
            every_face=not args.largest,
            fallback_center=args.fallback_center,
            progress=sys.stderr.isatty() and (len(paths) > 1 or any(map(is_video, paths))),
            video_every=args.every,
        )
    result.failures = failures + result.failures
    if args.json:
        print(as_json(result, predictor.card, predictor.flip))
    elif args.csv:
        print(as_csv(result), end="")
    elif result.faces:
        print(as_table(result))
        if predictor.card.members > 1:
            print(f"(the mean of {predictor.card.members} models: {predictor.card.arch})")
    if args.annotate:
        written = annotate(result, args.annotate)
        print(f"annotated {len(written)} photos in {args.annotate}", file=sys.stderr)
    for failure in result.failures:
        print(f"{failure.file}: {failure.reason}", file=sys.stderr)
    if not paths and not failures:
        print("error: no photos found in the given folders", file=sys.stderr)
        return 1
    return 1 if result.failures else 0


def main(argv: list[str] | None = None) -> int:
    """``agezoo`` console script: ``agezoo predict ...`` and ``agezoo export ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"predict": predict_main, "models": models_main, "export": _export_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(
            "usage: agezoo {predict,models,export} ...\n\n"
            "  predict   ages of the faces in photos (agezoo predict --help)\n"
            "  models    the age models --model can name, the default marked\n"
            "  export    a run folder to ONNX (PyTorch) or .keras + SavedModel (Keras)",
            file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return commands[argv[0]](argv[1:])
    except BrokenPipeError:  # `agezoo predict ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a pipe closed under a command (128 + SIGPIPE)


def model_rows() -> list[dict]:
    """The age models ``--model`` can name: name, default, validation MAE, what it is."""
    import json

    import weights

    default = weights.default_age_model()
    released = weights.released_cards()
    general = weights.local_general()
    rows = []
    for name in weights.age_models():
        if name in weights.ENSEMBLES:
            card = weights.ENSEMBLES[name]
            mae, what = card["val"]["mae"], "ensemble of " + " + ".join(card["members"])
            try:
                check_members(name, card)
            except ModelNotFoundError:
                what += " (refused: a member was released again since; refit it)"
        elif name in released:
            card = released[name]
            mae, what = card["val_mae"], f"weights/released/{card['weights_file']}"
        elif name in general:
            card = json.loads(general[name].read_text())
            mae, what = card.get("val_mae"), str(general[name].with_suffix("").with_suffix(""))
        else:
            entry = weights.ENTRIES[name]
            card, mae, what = {}, entry.mae, entry.url
        if card.get("trained_on_test"):
            what += " (final: no held-out figures of its own; see its card)"
        rows.append({"name": name, "default": name == default, "val_mae": mae, "what": what})
    return rows


def models_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agezoo models",
        description="The age models agezoo predict --model can name; * marks the default. "
        "Validation MAE in years, on people the model never trained on (an ensemble's through "
        "predict's path, a file's as training measured it); each model's card says more.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = model_rows()
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no age model yet: make release, or make model FRAMEWORK=torch")
        return 0
    width = max(len(r["name"]) for r in [*rows, {"name": "name"}])
    print(f"  {'name':<{width}}  val MAE  model")
    for r in rows:
        mae = f"{r['val_mae']:.2f}" if r["val_mae"] is not None else "  – "
        print(f"{'*' if r['default'] else ' '} {r['name']:<{width}}  {mae:>7}  {r['what']}")
    return 0


def _export_main(argv: list[str]) -> int:
    """A Keras run folder exports to .keras + SavedModel, anything else goes to PyTorch's ONNX
    export (which names what is wrong with it)."""
    found = backend_of_run(argv[0]) if argv and Path(argv[0]).is_dir() else None
    return (found or BACKENDS["torch"]).module("export").main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
