"""ONNX Runtime backend of ``agezoo predict``: an exported ``.onnx`` age model.

Needs only onnxruntime, numpy and OpenCV: neither PyTorch nor TensorFlow is imported on this
path. Faces are found by the model's detector unless that is MTCNN, which runs on TensorFlow:
then by the default detector (BlazeFace through OpenCV, eyes from dlib), which places the eyes
better than MTCNN on FG-NET (``benchmarks/RESULTS.md``). The model's card travels inside the file
as metadata.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from common.detectors import DEFAULT_DETECTOR
from common.predictor import ModelCard, Predictor

CARD_KEY = "agezoo_card"
# Faces per ONNX Runtime call: MobileNetV2 at 112 px runs 1,350-1,640 passes/s on this 2-core
# CPU in batches of 4-16 against 1,200-1,280 in batches of 64 (the activations of a small batch
# stay in cache; benchmarks/RESULTS.md, predict speed).
ONNX_BATCH = 16


def load_predictor(path: str | Path, device: str = "cpu", threads: int = 0) -> Predictor:
    """A predictor over an ONNX file exported by ``python -m torch_impl.export``; it runs on
    onnxruntime's CPU provider whatever ``device`` says."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError("ONNX models need onnxruntime: pip install onnxruntime") from exc
    path = Path(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from exc
    meta = session.get_modelmeta().custom_metadata_map
    if CARD_KEY not in meta:
        raise ValueError(f"{path}: no {CARD_KEY} metadata; export it with torch_impl.export")
    card = ModelCard.from_dict(json.loads(meta[CARD_KEY]))
    detector = DEFAULT_DETECTOR if card.detector == "mtcnn" else card.detector
    card = dataclasses.replace(card, framework="onnx", detector=detector, source=str(path))
    name = session.get_inputs()[0].name

    def forward(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(images, np.float32)})[0]

    return Predictor(card, forward, batch_size=ONNX_BATCH)
