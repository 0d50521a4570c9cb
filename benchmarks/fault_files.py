"""The fault benchmark's file parts: damaged files, two writers at once, a full disk and the
bad-input corpus at scale (``benchmarks/faults.py`` runs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.fault_kills import (
    CACHE_SCRIPT,
    HANG_SECONDS,
    ROOT,
    _entries,
    _entry_bytes,
    _shard_outcome,
    row,
    run,
    synthetic_photos,
    timed,
    tiny_train_args,
)

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
