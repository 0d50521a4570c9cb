"""Check that the installed environment is one the project can run in.

Run by ``make setup``: it fails early, naming the package, instead of crashing later.
"""

from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python -m common.env_check",
        description="Checks that the environment can import both frameworks in one process.",
    ).parse_args(argv)
    problems = []
    if importlib.util.find_spec("triton") is not None:
        problems.append(
            "triton is installed: with it, importing TensorFlow before torchvision crashes the "
            "process (segfault in libtriton.so). Remove it: pip uninstall triton"
        )
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - only on a broken install
        problems.append(f"OpenCV does not import: {exc}")
    else:
        if not cv2.__version__.startswith("4."):
            problems.append(f"opencv {cv2.__version__} found; the 5.x wheels ship no Haar cascades")
    for line in problems:
        print(f"agezoo env check: {line}", file=sys.stderr)
    if not problems:
        print("agezoo env check: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
