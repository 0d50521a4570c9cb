"""Builds the 5-point walker of ``common.detectors.five_points`` into the cache.

Reads dlib's serialised ``shape_predictor`` into arrays, compiles ``five_points.c`` with the
platform's C compiler (``-ffp-contract=off``: no fused multiply-adds, dlib's arithmetic) and
keeps the two, named by the source's and the model file's sha256, only when the build gives
dlib's points on 300 generated faces. ``make setup`` runs it; without a C compiler it says so and
dlib's own predictor keeps running (the same points, holding the GIL).

Usage: python -m common.detectors.five_points_build [--force]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import fields
from pathlib import Path

import numpy as np

from common.detectors.five_points import (
    MAX_LANDMARKS,
    SOURCE,
    FivePoints,
    ShapeModel,
    built_files,
)

FLOAT_SPECIAL = 32000  # dlib's float_details: exponents from here on encode inf / nan
CHECK_FACES = 300  # generated (image, box) pairs a build must match dlib on


def read_shape_predictor(path: str | Path) -> ShapeModel:
    """Parses dlib's serialised ``shape_predictor`` (version 1); errors name the file."""
    data = Path(path).read_bytes()
    pos = 0

    def integer() -> int:  # a byte of size | sign, then the size's bytes, little-endian
        nonlocal pos
        head = data[pos]
        size = head & 0x0F
        value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
        pos += 1 + size
        return -value if head & 0x80 else value

    def real() -> float:  # float_details: an integer mantissa and a power of two
        mantissa, exponent = integer(), integer()
        if exponent >= FLOAT_SPECIAL:
            raise ValueError(f"{path}: a non-finite value in the model")
        return math.ldexp(mantissa, exponent)

    def column() -> list[float]:  # matrix<float,0,1>: -rows, -cols, then the values
        rows, cols = abs(integer()), abs(integer())
        return [real() for _ in range(rows * cols)]

    try:
        if integer() != 1:
            raise ValueError(f"{path}: not a version-1 dlib shape predictor")
        initial = column()
        forests = []
        for _ in range(integer()):
            trees = []
            for _ in range(integer()):
                splits = [(integer(), integer(), real()) for _ in range(integer())]
                trees.append((splits, [column() for _ in range(integer())]))
            forests.append(trees)
        anchors = [[integer() for _ in range(integer())] for _ in range(integer())]
        deltas = [[(real(), real()) for _ in range(integer())] for _ in range(integer())]
    except IndexError as exc:
        raise ValueError(f"{path}: cut short at byte {pos}") from exc
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} bytes left after the model")
    splits = np.array([[tree[0] for tree in trees] for trees in forests], np.float64)
    model = ShapeModel(
        initial=np.array(initial, np.float32).reshape(-1, 2),
        anchors=np.array(anchors, np.int32),
        deltas=np.array(deltas, np.float32),
        idx1=splits[..., 0].astype(np.int32),
        idx2=splits[..., 1].astype(np.int32),
        thresh=splits[..., 2].astype(np.float32),
        leaves=np.array([[tree[1] for tree in trees] for trees in forests], np.float32),
    )
    if 2**model.depth - 1 != model.idx1.shape[2] or len(model.initial) > MAX_LANDMARKS:
        raise ValueError(f"{path}: trees that are not complete, or over {MAX_LANDMARKS} points")
    return model


def compiler() -> list[str] | None:
    """The C compiler Python was built with (or ``cc``), if one is on this machine."""
    from shutil import which

    cc = shlex.split(sysconfig.get_config_var("CC") or "cc") or ["cc"]
    return cc if which(cc[0]) else None


def build(dat: Path, force: bool = False) -> tuple[Path, Path]:
    """Compiles the walker and writes the parsed arrays into the cache (kept when there)."""
    library, arrays = built_files(dat)
    if library.is_file() and arrays.is_file() and not force:
        return library, arrays
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on this machine")
    library.parent.mkdir(parents=True, exist_ok=True)
    tag = f".tmp{os.getpid()}"
    tmp_lib, tmp_arrays = library.with_suffix(tag + ".so"), arrays.with_suffix(tag + ".npz")
    try:
        flags = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
        done = subprocess.run(
            [*cc, *flags, "-o", str(tmp_lib), str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[-400:]}")
        model = read_shape_predictor(dat)
        np.savez(tmp_arrays, **{f.name: getattr(model, f.name) for f in fields(ShapeModel)})
        gap = mismatches(FivePoints(tmp_lib, tmp_arrays), dat)
        if gap:
            raise RuntimeError(f"the build differs from dlib on {gap} of {CHECK_FACES} faces")
        tmp_arrays.replace(arrays)
        tmp_lib.replace(library)
    finally:
        tmp_lib.unlink(missing_ok=True)
        tmp_arrays.unlink(missing_ok=True)
    return library, arrays


def mismatches(walker: FivePoints, dat: Path, faces: int = CHECK_FACES, seed: int = 0) -> int:
    """On how many generated (image, box, window) cases the walker's points differ from
    dlib's predictor run on the window (blurred noise, so that the trees take every branch)."""
    import cv2
    import dlib

    predictor = dlib.shape_predictor(str(dat))
    rng = np.random.default_rng(seed)
    differ = 0
    for _ in range(faces):
        h, w = (int(v) for v in rng.integers(40, 320, 2))
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.5)
        left, top = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        right, bottom = int(rng.integers(left + 16, w + 1)), int(rng.integers(top + 16, h + 1))
        side = int(rng.integers(12, 2 * max(right - left, bottom - top)))
        x0, y0 = (int(v) for v in rng.integers(-side // 2, [right - left, bottom - top]))
        rect = (x0, y0, x0 + side, y0 + side)
        window = np.ascontiguousarray(image[top:bottom, left:right])
        shape = predictor(window, dlib.rectangle(*rect))
        expected = np.array([[p.x, p.y] for p in shape.parts()])
        differ += not np.array_equal(walker(image, rect, (left, top, right, bottom)), expected)
    return differ


def main(argv: list[str] | None = None) -> int:
    from common.detectors.blazeface import five_points_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build again even if cached")
    args = parser.parse_args(argv)
    dat = five_points_path()
    if dat is None:
        print("dlib's 5-point model is not installed (dlib-bin, face-recognition-models)")
        return 1
    try:
        library, _ = build(dat, args.force)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        # Not a failure of the set-up: dlib gives the same points, slower.
        print(f"the 5-point eyes stay on dlib's own predictor: {exc}", file=sys.stderr)
        return 0
    print(f"5-point eyes without the GIL: {library} (matches dlib on {CHECK_FACES} faces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
