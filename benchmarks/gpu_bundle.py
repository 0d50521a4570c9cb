"""Fill ``gpu-bundle/`` with what the GPU check needs that the GPU machine's image lacks.

The image (Python 3.12, torch 2.11, JAX, no TensorFlow, no Keras, no network) gets: the Keras
wheel and the two dependencies it lacks (namex, optree), downloaded for cp312 / manylinux, plus
cp311 copies of the binary ones for the CPU dry run here; and the FG-NET copy (images and
points) for the short LOPO run, its JPEGs re-encoded at quality 80 (44 -> 21 MiB: with the
released models in the checkout, the originals no longer fit) and its points as they are.
Nothing else. The folder is git-ignored: FG-NET must never be committed. Prints what would
travel (the checkout plus the bundle), which must stay under the 64 MiB the device tool carries.

Usage: ``make gpu-bundle`` (``python -m benchmarks.gpu_bundle``), with AGEZOO_FGNET_DIR set.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common.datasets import fgnet_root

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "gpu-bundle"
LIMIT_MIB = 64
WHEELS = ("keras", "namex", "optree")  # what Keras 3 needs beyond the image's packages
JPEG_QUALITY = 80  # for throughput and a from-scratch smoke run, not for MAE figures


def download_wheels(dest: Path, python_version: str) -> None:
    from importlib.metadata import version

    specs = [f"keras=={version('keras')}", "namex", "optree"]
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", python_version,
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--dest", str(dest), *specs,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def copy_fgnet(source: Path, dest: Path) -> None:
    """FG-NET's points as they are and its images re-encoded (same pixels size, mode, names)."""
    from PIL import Image

    shutil.copytree(source / "points", dest / "points", dirs_exist_ok=True)
    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    for path in sorted((source / "images").iterdir()):
        target = images / path.name
        if target.is_file():
            continue
        with Image.open(path) as im:
            if im.format != "JPEG" or im.getexif().get(0x0112, 1) != 1:
                shutil.copyfile(path, target)  # nothing to gain, or an orientation to keep
                continue
            tmp = images / f".tmp-{path.name}"
            im.save(tmp, "JPEG", quality=JPEG_QUALITY)
        tmp.replace(target)


def tree_bytes(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def checkout_bytes() -> int:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return tree_bytes(ROOT / f.decode() for f in files if f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLE)
    args = parser.parse_args(argv)
    out: Path = args.out
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for version in ("3.12", "3.11"):  # the image's Python, and this machine's for the dry run
        download_wheels(wheels, version)
    try:
        source = fgnet_root(download=False)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if (out / "fgnet" / "images").is_dir() and not (out / "fgnet" / "REENCODED").is_file():
        shutil.rmtree(out / "fgnet")  # a bundle made before the re-encoding
    copy_fgnet(source, out / "fgnet")
    (out / "fgnet" / "REENCODED").write_text(f"images re-encoded at JPEG quality {JPEG_QUALITY}\n")
    bundle = tree_bytes(out.rglob("*"))
    total = bundle + checkout_bytes()
    print(
        f"{out}: {bundle / 2**20:.1f} MiB ({len(list(wheels.glob('*.whl')))} wheels, FG-NET "
        f"{tree_bytes((out / 'fgnet').rglob('*')) / 2**20:.1f} MiB); with the checkout "
        f"{total / 2**20:.1f} MiB of the {LIMIT_MIB} MiB that travel"
    )
    if total >= LIMIT_MIB * 2**20:
        print("error: too big to carry to the GPU machine", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
