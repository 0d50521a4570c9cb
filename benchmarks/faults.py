"""Faults survived, measured: every long path killed at seeded random moments and rerun, the
files it writes damaged, two writers at once, a full disk, and the bad-input corpus at scale.

Usage: python -m benchmarks.faults [--kills 3] [--seed 0] [--only cache torch ...] [--table]

Each part runs the real command in a subprocess on synthetic data (no data set needed):

- ``cache``:   the aligned-face cache build, SIGKILLed; no partial entry is ever readable and
               the rebuilt entry equals a clean build byte for byte.
- ``torch`` / ``keras``: a tiny training run, SIGKILLed, then ``resume=true``; its predictions
               and figures equal an uninterrupted run's (bitwise on CPU).
- ``shard``:   the ``smoke`` benchmark, SIGKILLed, rerun; its results equal a clean run's.
- ``release``: ``agezoo.release`` SIGKILLed; no card without its file (or failing its hash)
               is ever left, and a rerun leaves no file without a card.
- ``corrupt``: a cache entry, a checkpoint, a released file and a results JSON cut short or
               with one byte changed; each must be detected (named), never read silently.
- ``race``:    two processes build the same cache entry; two shards share a results folder.
- ``disk``:    cache build, checkpoint and release on a 4 MB tmpfs (root only; skipped with
               the reason elsewhere): a clear message naming the path, no partial file.
- ``corpus``:  ``agezoo predict`` on the bad-input corpus with 5,000 tiny images: every bad
               one named, exit 1, no hang, its peak RSS.

Writes ``benchmarks/results/faults.json`` (one row per fault tried: survived, data lost, hung,
details); ``--table`` prints the Markdown table of ``benchmarks/RESULTS.md`` from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.fault_files import part_corpus, part_corrupt, part_disk, part_race
from benchmarks.fault_kills import part_cache, part_release, part_shard, part_training
from common.results import atomic_write_json

OUT = Path(__file__).parent / "results" / "faults.json"

PARTS: dict[str, Callable] = {
    "cache": part_cache,
    "torch": lambda w, r, k: part_training("torch", w, r, k),
    "keras": lambda w, r, k: part_training("keras", w, r, max(1, k - 1)),
    "shard": part_shard,
    "release": part_release,
    "corrupt": part_corrupt,
    "race": part_race,
    "disk": part_disk,
    "corpus": part_corpus,
}


def table(rows: list[dict]) -> str:
    lines = [
        "| path | fault | tried | survived | data lost | hangs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        kind = r["fault"].split(" at ")[0] if r["fault"].startswith("SIGKILL") else r["fault"]
        groups.setdefault((r["path"], kind), []).append(r)
    for (path, kind), rs in groups.items():
        lines.append(
            f"| {path} | {kind} | {len(rs)} | {sum(r['survived'] for r in rs)} | "
            f"{sum(r['lost'] for r in rs)} | {sum(r['hung'] for r in rs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="kills per long path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())["rows"]))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="agezoo-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    for name in args.only:
        t0 = time.perf_counter()
        print(f"{name} ...", flush=True)
        part_dir = work / name  # each part starts from nothing: no file of an older run
        shutil.rmtree(part_dir, ignore_errors=True)
        part_dir.mkdir(parents=True)
        rows = PARTS[name](part_dir, rng, args.kills)
        out["rows"] = [r for r in out["rows"] if r.get("part") != name]
        out["rows"] += [{"part": name, **r} for r in rows]
        out.update(
            machine=platform.platform(),
            date=time.strftime("%Y-%m-%d"),
            seed=args.seed,
            kills=args.kills,
        )
        atomic_write_json(args.out, out)  # each part kept as soon as it is done
        for r in rows:
            mark = "ok  " if r["survived"] else "FAIL"
            print(f"  {mark} {r['path']}: {r['fault']}" + ("" if r["survived"] else f"  {r}"))
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print(table(out["rows"]))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["survived"] for r in out["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
