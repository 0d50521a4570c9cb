"""How well do the face detectors find FG-NET's faces and eyes, judged by its landmarks?

For each detector of ``common.detectors`` (BlazeFace with dlib's 5-point eyes, MTCNN's five
points, OpenCV's Haar cascades): how often the largest face found holds both landmark eyes, how
often eyes were found, the eye error (the worse of the two eyes, in % of the landmark
inter-ocular distance) and the seconds per photo (decode excluded). For Haar it also measures
where the landmark eyes sit inside the face box, which calibrates
``common.detectors.HAAR_EYE_X`` / ``_Y``. ``--chips DIR ...`` adds the share of tight face crops
(All-Age-Faces, APPA) in which a face is found at all, with no landmarks used.

Usage: AGEZOO_FGNET_DIR=... python -m benchmarks.eye_geometry [--detectors blazeface mtcnn haar]
           [--chips DIR ...] [--chips-per-dir 500]
Writes benchmarks/results/eye_geometry.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.datasets import fgnet_root, load_fgnet
from common.detectors import DETECTORS, detect
from common.faces import eyes_from_landmarks, load_rgb
from common.inputs import IMAGE_SUFFIXES

OUT = Path(__file__).parent / "results" / "eye_geometry.json"


def measure(records, detector: str) -> dict:
    counts, eye_err, rel, seconds = Counter(), [], [], []
    for rec in tqdm(records, desc=detector, unit="img"):
        image = load_rgb(rec.path)
        truth = eyes_from_landmarks(rec.landmarks)
        t0 = time.perf_counter()
        found = detect(image, detector)
        seconds.append(time.perf_counter() - t0)
        if not found:
            counts["no_face"] += 1
            continue
        face = found[0]
        x, y, w, h = face.box
        inside = ((x <= truth[:, 0]) & (truth[:, 0] <= x + w)).all() and (
            (y <= truth[:, 1]) & (truth[:, 1] <= y + h)
        ).all()
        counts["face" if inside else "face_elsewhere"] += 1
        if not inside:
            continue
        counts[f"by_{face.method}"] += 1
        rel.append([*((truth[:, 0] - x) / w), float(((truth[:, 1] - y) / h).mean())])
        if face.eyes is not None:
            counts["eyes"] += 1
            iod = np.linalg.norm(truth[1] - truth[0])
            eye_err.append(float(np.linalg.norm(face.eyes - truth, axis=1).max() / iod))
    n = len(records)
    rel = np.array(rel)
    out = {
        "images": n,
        "counts": dict(counts),
        "face_found_rate": round(counts["face"] / n, 4),
        "eyes_found_rate": round(counts["eyes"] / n, 4),
        "eye_error_pct_iod_median": round(100 * float(np.median(eye_err)), 2),
        "eye_error_pct_iod_p90": round(100 * float(np.percentile(eye_err, 90)), 2),
        "seconds_per_image_median": round(float(np.median(seconds[1:] or seconds)), 4),
    }
    if detector == "haar" and len(rel):
        out["landmark_eye_x_in_box_median"] = np.median(rel[:, :2], axis=0).round(3).tolist()
        out["landmark_eye_y_in_box_median"] = round(float(np.median(rel[:, 2])), 3)
    return out


def chip_rate(folders: list[Path], detector: str, per_dir: int, seed: int = 0) -> dict:
    """The share of tight face crops in which the detector finds a face, per folder."""
    out = {}
    rng = np.random.default_rng(seed)
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{folder}: no images")
        pick = [files[i] for i in sorted(rng.choice(len(files), min(per_dir, len(files)), False))]
        found = sum(
            bool(detect(load_rgb(p), detector))
            for p in tqdm(pick, desc=f"{detector} {folder.name}")
        )
        out[str(folder)] = {"images": len(pick), "found_rate": round(found / len(pick), 4)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--chips", nargs="*", type=Path, default=[], help="folders of tight crops")
    parser.add_argument("--chips-per-dir", type=int, default=500)
    args = parser.parse_args(argv)
    records = load_fgnet(fgnet_root())
    records = records[: args.limit] if args.limit else records
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in args.detectors:
        result[name] = measure(records, name)
        if args.chips:
            result[name]["tight_chips"] = chip_rate(args.chips, name, args.chips_per_dir)
    result.update(
        what="largest detected face vs FG-NET's landmark eyes (eye error in % of their distance)",
        machine=platform.platform(),
        opencv=cv2.__version__,
        date=time.strftime("%Y-%m-%d"),
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
