"""ONNX Runtime backend of ``agezoo predict``: an exported ``.onnx`` age model.

Needs only onnxruntime, numpy and OpenCV: neither PyTorch nor TensorFlow is imported on this
path. MTCNN runs on TensorFlow, so faces are found with OpenCV's Haar cascades here (on FG-NET:
faces found 94.7 % vs 99.8 %, median eye error 5.6 % vs 4.4 % of the inter-ocular distance;
``benchmarks/RESULTS.md``). The model's card travels inside the file as metadata.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from common.predictor import ModelCard, Predictor

CARD_KEY = "agezoo_card"


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
    card = dataclasses.replace(card, framework="onnx", detector="haar", source=str(path))
    name = session.get_inputs()[0].name

    def forward(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(images, np.float32)})[0]

    return Predictor(card, forward)
