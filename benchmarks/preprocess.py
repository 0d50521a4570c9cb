"""Times FG-NET preprocessing: a cold build of the aligned cache, then reloads from it.

Usage: AGEZOO_FGNET_DIR=... python -m benchmarks.preprocess [--size 224] [--repeats 3]
Writes benchmarks/results/preprocess.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common.cache import cached_faces
from common.datasets import fgnet_root, load_fgnet
from common.faces import AlignSpec

OUT = Path(__file__).parent / "results" / "preprocess.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = fgnet_root()
    spec = AlignSpec(size=args.size)
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            arrays = cached_faces(load_fgnet(root), spec, "fgnet", cache_dir=tmp, progress=False)
            cold.append(time.perf_counter() - t0)
            for _ in range(5):
                t0 = time.perf_counter()
                again = cached_faces(load_fgnet(root), spec, "fgnet", cache_dir=tmp, progress=False)
                warm.append(time.perf_counter() - t0)
            assert np.array_equal(again.images, arrays.images)
    result = {
        "what": "FG-NET: read records + align + cache (cold); read records + hash + load (warm)",
        "images": len(arrays),
        "size": args.size,
        "cold_seconds_median": round(statistics.median(cold), 2),
        "cold_seconds_all": [round(t, 2) for t in cold],
        "warm_seconds_median": round(statistics.median(warm), 3),
        "cache_mb": round(arrays.images.nbytes / 1e6, 1),
        "pool": "threads",
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
