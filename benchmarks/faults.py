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
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.results import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "faults.json"
HANG_SECONDS = 600  # a rerun that takes longer than this counts as a hang

CACHE_SCRIPT = """
import sys
from pathlib import Path
from common.cache import cached_faces
from common.datasets import Record
from common.faces import AlignSpec
photos, cache = Path(sys.argv[1]), sys.argv[2]
records = [Record(p, p.stem.split("_")[0], float(p.stem.split("_")[1]))
           for p in sorted(photos.glob("*.png"))]
faces = cached_faces(records, AlignSpec(size=64, detector="blazeface"), "faults", cache,
                     workers=1, progress=False)
print(len(faces))
"""


def tiny_train_args(framework: str, run_dir: Path) -> list[str]:
    epochs = "4" if framework == "torch" else "3"
    return [
        sys.executable,
        "-m",
        f"{'torch_impl' if framework == 'torch' else 'tf_impl'}.train",
        "quick",
        "model.name=mobilenet_v2",
        "model.weights=none",
        "data.dataset=synthetic",
        "data.size=32",
        "data.synthetic_persons=24",
        "data.synthetic_images_per_person=4",
        f"optim.epochs={epochs}",
        "tensorboard=false",
        f"run_dir={run_dir}",
    ]


def run(cmd: list[str], env: dict | None = None, timeout: float = HANG_SECONDS, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, cwd=ROOT, **kw)


def kill_after(cmd: list[str], delay: float, env: dict | None = None) -> bool:
    """Starts ``cmd``, SIGKILLs it (and its children) after ``delay`` s; whether it was
    still running then."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    done = run(cmd, env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {done.stderr.decode()[-800:]}")
    return time.perf_counter() - t0


def row(path: str, fault: str, survived: bool, lost: int = 0, hung: bool = False, **detail):
    return {
        "path": path,
        "fault": fault,
        "survived": bool(survived),
        "lost": int(lost),
        "hung": bool(hung),
        **detail,
    }


# ---------------------------------------------------------------- kills


def synthetic_photos(folder: Path, n: int = 240) -> Path:
    from PIL import Image

    from common.synthetic import make_synthetic

    faces = make_synthetic(n // 4, 4, size=96, seed=21)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, person, age) in enumerate(
        zip(faces.images, faces.persons, faces.ages, strict=True)
    ):
        Image.fromarray(image).save(folder / f"{person}_{int(age)}_{i:04d}.png")
    return folder


def _entries(cache: Path) -> list[Path]:
    arrays = cache / "arrays"
    return (
        sorted(p for p in arrays.iterdir() if not p.name.startswith(".")) if arrays.is_dir() else []
    )


def _entry_bytes(entry: Path) -> tuple[bytes, dict]:
    meta = json.loads((entry / "meta.json").read_text())
    meta.pop("build_seconds", None)
    meta.pop("_crc32", None)  # covers build_seconds
    return (entry / "images.npy").read_bytes(), meta


def part_cache(work: Path, rng, kills: int) -> list[dict]:
    from common.cache import CorruptEntryError, _read_entry

    photos = synthetic_photos(work / "photos")
    cmd = lambda cache: [sys.executable, "-c", CACHE_SCRIPT, str(photos), str(cache)]  # noqa: E731
    clean = work / "cache-clean"
    seconds = timed(cmd(clean))
    (reference,) = _entries(clean)
    want = _entry_bytes(reference)
    rows = []
    for i, delay in enumerate(rng.uniform(0.1, 0.95, kills) * seconds):
        cache = work / f"cache-kill{i}"
        killed = kill_after(cmd(cache), delay)
        partial = 0
        for entry in _entries(cache):  # whatever is visible must read whole
            try:
                _read_entry(entry)
            except (CorruptEntryError, OSError):
                partial += 1
        try:
            timed(cmd(cache))
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
        entries = _entries(cache)
        same = len(entries) == 1 and _entry_bytes(entries[0]) == want
        leftovers = [p.name for p in (cache / "arrays").iterdir() if p.name.startswith(".")]
        rows.append(
            row(
                "cache build",
                f"SIGKILL at {delay:.1f} s of {seconds:.1f}",
                same and not partial and not leftovers,
                lost=0 if same else 1,
                hung=hung,
                killed=killed,
                partial_entries_seen=partial,
                leftovers=leftovers,
            )
        )
    return rows


def _run_outcome(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keep = ("best_val_mae", "best_epoch", "test_mae", "calibration", "test", "epochs_run")
    log = [
        line.split(",")[:2] + line.split(",")[5:6]
        for line in (run_dir / "log.csv").read_text().splitlines()
    ]
    return {
        "predictions": (run_dir / "predictions.csv").read_text(),
        "log": log,
        **{k: metrics.get(k) for k in keep},
    }


def part_training(framework: str, work: Path, rng, kills: int) -> list[dict]:
    env = {**os.environ, "AGEZOO_CACHE": str(work / "cache")}
    clean = work / f"{framework}-clean"
    seconds = timed(tiny_train_args(framework, clean), env)
    want = _run_outcome(clean)
    rows = []
    for i, delay in enumerate(rng.uniform(0.1, 0.95, kills) * seconds):
        run_dir = work / f"{framework}-kill{i}"
        killed = kill_after(tiny_train_args(framework, run_dir), delay, env)
        hung = False
        try:
            timed([*tiny_train_args(framework, run_dir), "resume=true"], env)
            got = _run_outcome(run_dir)
        except subprocess.TimeoutExpired:
            hung, got = True, {}
        except RuntimeError as exc:
            got = {"error": str(exc)[-300:]}
        same = got == want
        differ = sorted(k for k in want if got.get(k) != want[k])
        rows.append(
            row(
                f"{framework} training",
                f"SIGKILL at {delay:.1f} s of {seconds:.1f}",
                same,
                lost=0 if same else 1,
                hung=hung,
                killed=killed,
                differs_in=differ,
                error=got.get("error"),
            )
        )
    return rows


def _shard_outcome(out: Path) -> dict:
    found = {}
    for path in sorted((out / "results").rglob("*.json")):
        result = json.loads(path.read_text())
        found[str(path.relative_to(out))] = result.get("test", {}).get("mae", result.get("mae"))
    return found


def part_shard(work: Path, rng, kills: int) -> list[dict]:
    env = {**os.environ, "AGEZOO_CACHE": str(work / "cache")}
    cmd = lambda out: [sys.executable, "-m", "benchmarks.run", "smoke", "--out", str(out)]  # noqa: E731
    seconds = timed(cmd(work / "smoke-clean"), env)
    want = _shard_outcome(work / "smoke-clean")
    rows = []
    for i, delay in enumerate(rng.uniform(0.1, 0.95, kills) * seconds):
        out = work / f"smoke-kill{i}"
        killed = kill_after(cmd(out), delay, env)
        before = len(_shard_outcome(out)) if (out / "results").is_dir() else 0
        hung = False
        try:
            timed(cmd(out), env)
        except subprocess.TimeoutExpired:
            hung = True
        got = _shard_outcome(out)
        rows.append(
            row(
                "benchmark shard (smoke)",
                f"SIGKILL at {delay:.1f} s of {seconds:.1f}",
                got == want,
                lost=len(set(want) - set(got)),
                hung=hung,
                killed=killed,
                results_kept_from_before=before,
                results=len(got),
            )
        )
    foreign = work / "smoke-foreign"
    shutil.copytree(work / "smoke-clean", foreign)
    folds = json.loads((foreign / "folds.json").read_text())
    folds["folds"][0]["test"], folds["folds"][0]["train"][:1] = (
        folds["folds"][0]["train"][:1],
        folds["folds"][0]["test"],
    )
    (foreign / "folds.json").write_text(json.dumps(folds))
    merged = run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "merge",
            str(work / "smoke-merged"),
            str(work / "smoke-clean"),
            str(foreign),
        ],
        env,
    )
    rows.append(
        row(
            "benchmark merge",
            "a shard folder made on other folds",
            merged.returncode != 0,
            message=merged.stderr.decode().strip().splitlines()[-1:],
        )
    )
    return rows


def _released_state(dest: Path) -> dict:
    """Cards whose file is missing or fails its hash, and files no card names."""
    import hashlib

    cards = [json.loads(p.read_text()) for p in dest.glob("*.card.json")]
    named = {c["weights_file"] for c in cards}
    bad = [
        c["weights_file"]
        for c in cards
        if not (dest / c["weights_file"]).is_file()
        or hashlib.sha256((dest / c["weights_file"]).read_bytes()).hexdigest() != c["sha256"]
    ]
    orphans = [p.name for p in dest.glob("*.onnx") if p.name not in named]
    return {"cards": len(cards), "bad_cards": bad, "orphan_files": orphans}


def part_release(work: Path, rng, kills: int) -> list[dict]:
    env = {**os.environ, "AGEZOO_CACHE": str(work / "cache")}
    run_dir = work / "release-run"
    if not (run_dir / "metrics.json").is_file():
        timed(
            tiny_train_args("torch", run_dir)[:-2]
            + ["optim.epochs=1", "tensorboard=false", f"run_dir={run_dir}"],
            env,
        )
    cmd = lambda dest: [sys.executable, "-m", "agezoo.release", str(run_dir), "--dest", str(dest)]  # noqa: E731
    seconds = timed(cmd(work / "released-clean"), env)
    rows = []
    for i, delay in enumerate(rng.uniform(0.1, 0.99, kills) * seconds):
        dest = work / f"released-kill{i}"
        killed = kill_after(cmd(dest), delay, env)
        after_kill = (
            _released_state(dest) if dest.is_dir() else {"bad_cards": [], "orphan_files": []}
        )
        timed(cmd(dest), env)
        after = _released_state(dest)
        ok = not after_kill["bad_cards"] and not after["bad_cards"] and not after["orphan_files"]
        ok = ok and after["cards"] == 1
        rows.append(
            row(
                "release (ONNX + card)",
                f"SIGKILL at {delay:.1f} s of {seconds:.1f}",
                ok,
                killed=killed,
                after_kill=after_kill,
                after_rerun=after,
            )
        )
    return rows


# ---------------------------------------------------------------- corruption


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "cut short":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # one byte changed, in the second half: the payload, past any header
        data[len(data) * 3 // 4] ^= 0x5A
        path.write_bytes(bytes(data))


def part_corrupt(work: Path, rng, kills: int) -> list[dict]:
    env = {**os.environ, "AGEZOO_CACHE": str(work / "cache")}
    rows = []
    photos = synthetic_photos(work / "photos")
    cache = work / "cache-corrupt"
    timed([sys.executable, "-c", CACHE_SCRIPT, str(photos), str(cache)])
    (entry,) = _entries(cache)
    want = _entry_bytes(entry)
    for target in ("images.npy", "meta.json"):
        for how in ("cut short", "one byte changed"):
            _damage(entry / target, how)
            done = run(
                [sys.executable, "-W", "always", "-c", CACHE_SCRIPT, str(photos), str(cache)]
            )
            named = f"cache entry {entry}" in done.stderr.decode()
            (again,) = _entries(cache)
            rebuilt = _entry_bytes(again) == want
            rows.append(
                row(
                    f"cache entry {target}",
                    how,
                    named and rebuilt,
                    lost=0,
                    detected=named,
                    rebuilt=rebuilt,
                )
            )

    run_dir = work / "corrupt-run"
    timed(tiny_train_args("torch", run_dir), env)
    for name in ("last.pt", "best.pt"):
        for how in ("cut short", "one byte changed"):
            broken = work / f"broken-{name}-{how.replace(' ', '-')}"
            shutil.copytree(run_dir, broken)
            _damage(broken / name, how)
            if name == "last.pt":
                done = run(
                    [*tiny_train_args("torch", broken), "optim.epochs=5", "resume=true"], env
                )
            else:
                done = run(
                    [
                        sys.executable,
                        "-c",
                        "from agezoo.cli import main; raise SystemExit(main())",
                        "predict",
                        str(photos / sorted(os.listdir(photos))[0]),
                        "--model",
                        str(broken),
                    ],
                    env,
                )
            text = done.stderr.decode() + done.stdout.decode()
            detected = done.returncode != 0 and name in text and "Traceback" not in text
            rows.append(
                row(
                    f"torch checkpoint {name}",
                    how,
                    detected,
                    detected=detected,
                    exit=done.returncode,
                    message=text.strip().splitlines()[-1:],
                )
            )

    dest = work / "released"
    timed([sys.executable, "-m", "agezoo.release", str(run_dir), "--dest", str(dest)], env)
    if dest.is_dir():
        (card,) = [json.loads(p.read_text()) for p in dest.glob("*.card.json")]
        for how in ("cut short", "one byte changed"):
            copy = work / f"released-{how.replace(' ', '-')}"
            shutil.copytree(dest, copy)
            _damage(copy / card["weights_file"], how)
            card_file = copy / (Path(card["weights_file"]).stem + ".card.json")
            code = (
                "import json, sys, weights\nfrom pathlib import Path\n"
                f"weights.RELEASED_DIR = Path({str(copy)!r})\n"
                f"card = json.loads(Path({str(card_file)!r}).read_text())\n"
                "weights.ENTRIES[card['name']] = weights.released_entry(card)\n"
                "try:\n    weights.age_model_file(card['name'])\n"
                "except ValueError as exc:\n    print(exc); sys.exit(3)\n"
            )
            done = run([sys.executable, "-c", code], env)
            detected = done.returncode == 3 and "does not match" in done.stdout.decode()
            rows.append(
                row(
                    "released ONNX file",
                    how,
                    detected,
                    detected=detected,
                    message=done.stdout.decode().strip()[-200:],
                )
            )

    base = work / "smoke-base"
    timed([sys.executable, "-m", "benchmarks.run", "smoke", "--out", str(base)], env)
    result = next((base / "results").rglob("*.json"), None)
    if result is not None:
        want = _shard_outcome(base)
        for how in ("cut short", "one byte changed"):
            out = work / f"smoke-{how.replace(' ', '-')}"
            shutil.copytree(base, out)
            target = out / result.relative_to(base)
            _damage(target, how)
            done = run([sys.executable, "-m", "benchmarks.run", "smoke", "--out", str(out)], env)
            try:
                recovered = _shard_outcome(out) == want
            except ValueError:
                recovered = False
            text = done.stderr.decode()
            named = str(target) in text
            rows.append(
                row(
                    "benchmark result JSON",
                    how,
                    named and recovered and done.returncode == 0,
                    detected=named,
                    redone=recovered,
                    exit=done.returncode,
                    message=text.strip().splitlines()[-1:],
                )
            )
    return rows


# ---------------------------------------------------------------- races, disk, corpus


def race_cache(work: Path) -> dict:
    """Two processes build the same cache entry at once: one valid entry, equal to a clean one."""
    photos = synthetic_photos(work / "photos")
    clean = work / "cache-clean"
    if not _entries(clean):
        timed([sys.executable, "-c", CACHE_SCRIPT, str(photos), str(clean)])
    cache = work / "cache-race"
    cmd = [sys.executable, "-c", CACHE_SCRIPT, str(photos), str(cache)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    codes = [p.wait(timeout=HANG_SECONDS) for p in procs]
    entries = _entries(cache)
    same = len(entries) == 1 and _entry_bytes(entries[0]) == _entry_bytes(_entries(clean)[0])
    return row(
        "cache build",
        "two processes build the same entry at once",
        codes == [0, 0] and same,
        exits=codes,
        entries=len(entries),
    )


def race_shards(work: Path) -> dict:
    """Two shards of one benchmark write the same results folder at once."""
    env = {**os.environ, "AGEZOO_CACHE": str(work / "cache")}
    out = work / "smoke-race"
    base = [sys.executable, "-m", "benchmarks.run", "smoke", "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*base, "--shard", f"{i}/2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in (0, 1)
    ]
    codes = [p.wait(timeout=HANG_SECONDS) for p in procs]
    timed([*base[:-1], str(work / "smoke-clean")], env)
    want = _shard_outcome(work / "smoke-clean")
    got = _shard_outcome(out)
    return row(
        "benchmark shards",
        "two shards write one results folder at once",
        codes == [0, 0] and got == want,
        exits=codes,
        results=len(got),
        expected=len(want),
    )


def part_race(work: Path, rng, kills: int) -> list[dict]:
    return [race_cache(work), race_shards(work)]


DISK_SCRIPT = """
import sys, os
from pathlib import Path
what, target = sys.argv[1], Path(sys.argv[2])
try:
    if what == "cache":
        import numpy as np
        from common.cache import FaceArrays, _write_entry
        from common.faces import AlignSpec
        n = 200
        arrays = FaceArrays(np.ones((n, 112, 112, 3), np.uint8), np.zeros(n, np.float32),
                            np.array(["p"] * n), np.array(["f"] * n), np.array(["center"] * n))
        _write_entry(target / "arrays" / "full-112px-0", arrays, {}, "0", "full", AlignSpec())
    else:
        from common.results import atomic_write_bytes
        atomic_write_bytes(target / ("best.pt" if what == "checkpoint" else "model.onnx"),
                           os.urandom(6_000_000))
except OSError as exc:
    print(exc)
    sys.exit(3)
"""


def part_disk(work: Path, rng, kills: int) -> list[dict]:
    mount = work / "tmpfs"
    mount.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip() or "mount failed")[-200:]
        return [
            row("disk full", f"skipped: cannot mount a tmpfs here ({reason})", True, skipped=True)
        ]
    rows = []
    try:
        for what in ("cache", "checkpoint", "release"):
            (mount / what).mkdir()
            ran = run([sys.executable, "-c", DISK_SCRIPT, what, str(mount / what)])
            message = ran.stdout.decode().strip()
            left = [str(p.relative_to(mount)) for p in (mount / what).rglob("*") if p.is_file()]
            ok = ran.returncode == 3 and str(mount / what) in message and not left
            rows.append(
                row(
                    f"{what} write",
                    "disk full (4 MB tmpfs)",
                    ok,
                    message=message,
                    partial_files=left,
                )
            )
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    return rows


def part_corpus(work: Path, rng, kills: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import make_corpus

    folder = work / "corpus"
    expect = make_corpus(folder, tiny_images=5000)
    cmd = [
        sys.executable,
        "-c",
        "from agezoo.cli import main; raise SystemExit(main())",
        "predict",
        str(folder),
        "--json",
    ]
    t0 = time.perf_counter()
    with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as errs:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=errs)
        deadline = time.monotonic() + HANG_SECONDS
        while True:  # wait4 gives this process's own peak memory, not the benchmark's
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return [
                    row("agezoo predict", "bad-input corpus + 5,000 tiny images", False, hung=True)
                ]
            time.sleep(0.05)
    seconds = time.perf_counter() - t0
    peak_mb = usage.ru_maxrss / 1024
    done = subprocess.CompletedProcess(
        cmd,
        os.waitstatus_to_exitcode(status),
        (work / "stdout").read_bytes(),
        (work / "stderr").read_bytes(),
    )
    err = os.fsdecode(done.stderr)
    named = {os.path.relpath(line.split(": ", 1)[0], folder): line for line in err.splitlines()}
    missing = [n for n, r in expect.items() if r is not None and r not in named.get(n, "")]
    aged = {os.path.relpath(f["file"], folder) for f in json.loads(done.stdout)["faces"]}
    good = {n for n, r in expect.items() if r is None}
    ok = done.returncode == 1 and not missing and aged == good and "Traceback" not in err
    return [
        row(
            "agezoo predict",
            "bad-input corpus + 5,000 tiny images",
            ok,
            lost=len(good - aged),
            entries=len(expect),
            bad_unnamed=missing[:5],
            seconds=round(seconds, 1),
            peak_rss_mb=round(peak_mb, 1),
        )
    ]


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
