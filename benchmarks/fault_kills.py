"""The fault benchmark's shared steps and its kill parts: each long path run in a subprocess,
SIGKILLed at seeded random moments, rerun, and compared with an uninterrupted run
(``benchmarks/faults.py`` runs them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
