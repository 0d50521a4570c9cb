"""Benchmark runner: a matrix of (framework × model × loss × weights) cells over one fold file.

    python -m benchmarks.run PRESET [--out DIR] [--shard i/n] [--folds N]
    python -m benchmarks.run merge DEST SRC [SRC ...]
    python -m benchmarks.run status DIR [--shards n]

The preset (``common/configs/bench-*.yaml``) names the data, the protocol, the mode and the
cells. The fold file is built once (``DIR/folds.json``) and every cell reads it; each (cell,
fold) writes one JSON result atomically to ``DIR/results/CELL/FOLD.json``. A killed run resumes:
finished results are kept and skipped, a half-finished one is redone. ``--shard i/n`` takes every
n-th item, so n processes or machines can share the work; ``merge`` joins their folders, refusing
results made on other folds, other preprocessing or other starting weights; ``status`` says how
far each shard of a run spread over sessions has got, from the files alone.

Modes: ``finetune`` trains the whole network per fold with the framework's ``fit``; ``frozen``
computes each framework's backbone features once and trains only the age head per fold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from agezoo.backends import TRAINING, backend
from benchmarks.cells import Cell, pack_result
from common import results
from common.config import CONFIG_DIR, Config, DataConfig, ProtocolConfig, from_dict
from common.prepare import build_folds, load_faces
from common.splits import load_folds, save_folds

BENCH_KEYS = {"name", "description", "data", "protocol", "mode", "train", "head", "cells", "matrix"}


def preset_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = CONFIG_DIR / f"bench-{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("bench-") for p in CONFIG_DIR.glob("bench-*.yaml"))
        raise FileNotFoundError(f"no benchmark preset {name!r}; known: {known}")
    return path


def load_preset(name: str) -> dict:
    path = preset_file(name)
    preset = yaml.safe_load(path.read_text()) or {}
    unknown = set(preset) - BENCH_KEYS
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
    if preset.get("mode", "finetune") not in ("finetune", "frozen"):
        raise ValueError(f"{path.name}: mode must be finetune or frozen")
    preset.setdefault("name", path.stem.removeprefix("bench-"))
    preset.setdefault("mode", "finetune")
    return preset


def expand_cells(preset: dict) -> list[Cell]:
    cells = [Cell(**c) for c in preset.get("cells", [])]
    if "matrix" in preset:
        m = preset["matrix"]
        keys = ("framework", "model", "loss", "weights")
        for combo in itertools.product(*(m[k] for k in keys)):
            cells.append(Cell(*combo))
    for cell in cells:
        if cell.framework not in TRAINING:
            raise ValueError(f"cell {cell.id}: framework must be one of {', '.join(TRAINING)}")
    if len({c.id for c in cells}) != len(cells):
        raise ValueError("the preset lists a cell twice")
    return cells


def cell_config(preset: dict, cell: Cell) -> Config:
    """The training config of one cell: defaults ← preset ← the cell's own choices."""
    data = {
        "data": preset.get("data", {}),
        "protocol": preset.get("protocol", {}),
        **{k: v for k, v in (preset.get("train") or {}).items()},
    }
    data.setdefault("model", {})
    data["model"] = {**data["model"], "name": cell.model, "weights": cell.weights}
    data["loss"] = {**data.get("loss", {}), "name": cell.loss}
    data.setdefault("tensorboard", False)
    return from_dict(Config, data, where=f"preset {preset['name']} cell {cell.id}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def shard_items(cells: list[Cell], folds: list, shard: tuple[int, int]) -> list:
    """The (cell, fold) items of one shard: every n-th of the matrix, cells outermost."""
    return [(c, f) for c in cells for f in folds][shard[0] :: shard[1]]


def result_path(out: Path, cell: Cell, fold_name: str) -> Path:
    return out / "results" / cell.id / f"{fold_name}.json"


def prepare(preset: dict, out: Path):
    """Faces, folds and the fold hash; the fold file is written once and then only checked."""
    data = from_dict(DataConfig, preset.get("data", {}), "data")
    protocol = from_dict(ProtocolConfig, preset.get("protocol", {}), "protocol")
    faces = load_faces(data)
    folds = build_folds(protocol, faces.persons, data)
    fold_file = out / results.FOLDS
    if fold_file.is_file():
        old, digest, meta = load_folds(fold_file)
        if old != folds or meta.get("preprocess") != faces.key:
            raise ValueError(
                f"{out} holds results made on other folds or other preprocessing; "
                "use a new --out folder"
            )
    else:
        digest = save_folds(
            folds, fold_file, meta={"preprocess": faces.key, "preset": preset["name"]}
        )
        results.atomic_write_json(out / "preset.json", preset)
    return faces, folds, digest


def run(
    preset_name: str,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    max_folds: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Runs (or resumes) this shard's share of the matrix; returns the result files written."""
    preset = load_preset(preset_name)
    cells = expand_cells(preset)
    out.mkdir(parents=True, exist_ok=True)
    faces, folds, fold_hash = prepare(preset, out)
    folds = folds[:max_folds] if max_folds else folds
    items = shard_items(cells, folds, shard)
    done = [it for it in items if finished(result_path(out, it[0], it[1].name))]
    todo = [it for it in items if it not in done]
    written = []
    bar = tqdm(
        total=len(items),
        initial=len(done),
        desc=f"{preset['name']} cells×folds",
        unit="fold",
        disable=not progress,
    )
    starts = {cell.id: start_weights(cell) for cell in dict.fromkeys(c for c, _ in todo)}
    for cell_id, start in starts.items():
        check_start(out, cell_id, start)
    if preset["mode"] == "frozen":
        from benchmarks import frozen

        runner = frozen.FrozenRunner(preset, faces, out)
    for cell, fold in todo:
        bar.set_postfix_str(f"{cell.id} {fold.name}")
        if preset["mode"] == "frozen":
            result = runner.run(cell, cell_config(preset, cell), fold, fold_hash)
        else:
            result = _finetune(preset, cell, fold, fold_hash, faces, out, progress)
        result["start_weights"] = starts[cell.id]
        path = result_path(out, cell, fold.name)
        results.write_checked_json(path, result)
        written.append(path)
        bar.update()
    bar.close()
    return written


def finished(path: Path) -> bool:
    """Whether a (cell, fold) result is done: its file exists and reads whole. A damaged one
    (cut short, a byte changed) is named, set aside as ``NAME.corrupt`` and redone."""
    if not path.is_file():
        return False
    try:
        results.read_checked_json(path)
        return True
    except results.CorruptFileError as exc:
        print(f"{exc}; redoing it (the file is kept as {path.name}.corrupt)", file=sys.stderr)
        path.replace(path.with_name(path.name + ".corrupt"))
        return False


def start_weights(cell: Cell) -> str | None:
    """The age-pretrained weights file a cell starts from (its name carries its hash).

    Weights pretrained again give other results; a resumed or merged matrix must not mix them.
    """
    import weights

    if cell.weights not in weights.PRETRAINED_KINDS:
        return None
    return weights.aaf_weights(cell.framework, cell.model, cell.weights).name


def check_start(out: Path, cell_id: str, start: str | None) -> None:
    """Refuses to add folds started from other weights than the cell's finished folds in ``out``."""
    finished = next(iter(sorted((out / "results" / cell_id).glob("*.json"))), None)
    if finished is None:
        return
    before = results.read_checked_json(finished).get("start_weights")
    if before != start:
        raise ValueError(
            f"{cell_id}: its finished folds in {out} started from {before}, the weights at hand "
            f"are {start}; put those weights back (model card and file) or use a new --out"
        )


def _finetune(preset, cell, fold, fold_hash, faces, out: Path, progress: bool) -> dict:
    cfg = cell_config(preset, cell)
    work = out / "work" / cell.id / fold.name
    if work.exists():  # a half-finished (cell, fold) from a killed run: redo it from scratch
        shutil.rmtree(work)
    fit = backend(cell.framework).module("train").fit
    metrics = fit(cfg, faces, fold, fold_hash, work, progress=progress)
    outputs = None
    if (work / results.OUTPUTS).is_file():
        with np.load(work / results.OUTPUTS) as npz:
            outputs = {k: npz[k] for k in npz.files}
        outputs["val_true_age"] = faces.ages[outputs["val_idx"]].astype(float)
    preds = results.read_predictions(work / results.PREDICTIONS)
    result = pack_result(cell, fold, metrics, preds, outputs)
    shutil.rmtree(work)
    return result


def merge(dest: Path, sources: list[Path]) -> int:
    """Copies results from shard folders into ``dest``, refusing mismatched folds/preprocessing."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for src in sources:
        folds, digest, meta = load_folds(src / results.FOLDS)
        if (dest / results.FOLDS).is_file():
            _, dest_digest, dest_meta = load_folds(dest / results.FOLDS)
            if digest != dest_digest or meta.get("preprocess") != dest_meta.get("preprocess"):
                raise ValueError(
                    f"{src}: fold hash or preprocessing differs from {dest}; refusing to merge"
                )
        else:
            shutil.copy(src / results.FOLDS, dest / results.FOLDS)
            if (src / "preset.json").is_file():
                shutil.copy(src / "preset.json", dest / "preset.json")
        for path in sorted((src / "results").glob("*/*.json")):
            data = results.read_checked_json(path)
            if data.get("fold_hash") != digest:
                raise ValueError(f"{path}: made on other folds; refusing to merge")
            target = dest / "results" / path.parent.name / path.name
            check_start(dest, path.parent.name, data.get("start_weights"))
            if not target.exists():
                results.atomic_write_bytes(target, path.read_bytes())
                copied += 1
    return copied


def _readable(path: Path) -> bool:
    try:
        results.read_checked_json(path)
        return True
    except results.CorruptFileError:
        return False


def status(out: Path, shards: int = 1) -> list[dict]:
    """Per shard of ``out``'s full matrix: its items, how many have a result, and those missing."""
    if not (out / "preset.json").is_file() or not (out / results.FOLDS).is_file():
        raise FileNotFoundError(f"{out} is not a benchmark folder (no preset.json / folds.json)")
    preset = json.loads((out / "preset.json").read_text())
    folds, _, _ = load_folds(out / results.FOLDS)
    cells = expand_cells(preset)
    rows = []
    for i in range(shards):
        mine = shard_items(cells, folds, (i, shards))
        missing = [
            f"{c.id} {f.name}" for c, f in mine if not _readable(result_path(out, c, f.name))
        ]
        rows.append({"shard": f"{i}/{shards}", "total": len(mine), "missing": missing})
    return rows


def print_status(out: Path, shards: int) -> None:
    rows = status(out, shards)
    total = sum(r["total"] for r in rows)
    done = total - sum(len(r["missing"]) for r in rows)
    print(f"{out}: {done} of {total} results")
    for r in rows:
        have = r["total"] - len(r["missing"])
        state = "done" if not r["missing"] else "not started" if not have else "partial"
        print(f"  shard {r['shard']:>6}: {have:3d}/{r['total']:<3d} {state}")
    complete = [r["shard"] for r in rows if not r["missing"]]
    print(f"complete shards: {', '.join(complete) or 'none'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        parser = argparse.ArgumentParser(prog="benchmarks.run status")
        parser.add_argument("out", type=Path)
        parser.add_argument("--shards", type=int, default=1, help="the n of --shard i/n")
        args = parser.parse_args(argv[1:])
        if args.shards < 1:
            parser.error("--shards must be at least 1")
        try:
            print_status(args.out, args.shards)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if argv and argv[0] == "merge":
        parser = argparse.ArgumentParser(prog="benchmarks.run merge")
        parser.add_argument("dest", type=Path)
        parser.add_argument("sources", type=Path, nargs="+")
        args = parser.parse_args(argv[1:])
        try:
            print(f"merged {merge(args.dest, args.sources)} results into {args.dest}")
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="a common/configs/bench-NAME.yaml name or a YAML path")
    parser.add_argument("--out", type=Path, help="default: runs/bench-NAME")
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--folds", type=int, help="only the first N folds (smoke runs)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    try:
        preset = load_preset(args.preset)
        out = args.out or Path("runs") / f"bench-{preset['name']}"
        t0 = time.perf_counter()
        written = run(args.preset, out, parse_shard(args.shard), args.folds)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{len(written)} results written to {out / 'results'} in "
        f"{(time.perf_counter() - t0) / 60:.1f} min"
    )
    if not args.no_report:
        from benchmarks import report

        print(f"report: {report.write_report(out)}")
    return 0


def _command_line() -> int:
    """``main`` for ``python -m``: ends quietly, as ``cat`` does, when its reader has gone."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # ``| head`` had its lines; results already written stay on disk and a rerun resumes.
        # Point stdout at /dev/null so the flush at exit does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # the shell's status for a writer stopped by SIGPIPE


if __name__ == "__main__":
    raise SystemExit(_command_line())
