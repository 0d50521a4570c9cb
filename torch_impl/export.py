"""Export a PyTorch run to ONNX, then load it back and check it against PyTorch.

Usage: ``python -m torch_impl.export RUN_DIR_OR_best.pt [--out model.onnx]``

The ONNX graph takes what every agezoo backend takes: aligned float RGB crops in 0..255,
NHWC, any batch size; the resize and normalisation are inside. The model card (crop geometry,
detector, loss, calibration temperature) travels in the file's metadata, so
``agezoo predict --onnx model.onnx`` needs nothing else. The export counts as done only when
onnxruntime's logits match PyTorch's within 1e-4 on faces it has not seen.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.export_parity import EXPORT_TOLERANCE, images_per_second, logit_gap
from common.onnx_predictor import CARD_KEY
from common.onnx_predictor import load_predictor as load_onnx_predictor
from common.predictor import ModelCard, ModelNotFoundError
from common.results import atomic_write_bytes
from common.synthetic import make_synthetic
from torch_impl.models import AgeModel
from torch_impl.predictor import load_checkpoint
from torch_impl.preprocess import to_input


class InferenceGraph(nn.Module):
    """float NHWC 0..255 crops → logits: the age model with its input conversion inside."""

    def __init__(self, model: AgeModel, input_size: int):
        super().__init__()
        self.model, self.input_size = model.eval(), input_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(
            to_input(images, self.model.entry.mean, self.model.entry.std, self.input_size)
        )


def parity_faces(size: int, n: int = 8) -> np.ndarray:
    """Face-like test crops the model has not been trained on (seeded synthetic faces)."""
    return make_synthetic(n_persons=n, images_per_person=1, size=size, seed=12345).images[:n]


def export_onnx(source: str | Path, out: str | Path | None = None, opset: int = 18) -> dict:
    """Writes the ONNX file and returns a report (path, size, relative logit gap, images/s)."""
    model, card, input_size = load_checkpoint(source)
    source = Path(source)
    run_dir = source if source.is_dir() else source.parent
    return export_model(model, card, input_size, out or run_dir / "model.onnx", opset)


def export_model(
    model: AgeModel,
    card: ModelCard,
    input_size: int,
    out: str | Path,
    opset: int = 18,
    reference: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Exports an age model with ``card`` in the file's metadata. The logits of onnxruntime are
    checked against PyTorch's and, when given, against ``reference`` (the model the weights were
    ported from: a Keras run's own forward pass); a gap beyond 1e-4 writes nothing."""
    out = Path(out)
    graph = InferenceGraph(model, input_size).eval()
    example = torch.zeros(2, card.size, card.size, 3)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()
    import onnx

    buf = io.BytesIO()
    onnx.save_model(proto, buf)
    atomic_write_bytes(out, buf.getvalue())

    faces = parity_faces(card.size)
    ref = _run(graph, faces)
    predictor = load_onnx_predictor(out)
    predictor.flip = False  # model against model: one pass per face on both sides
    got = predictor.outputs(faces)
    gap = logit_gap(got, ref)
    gaps = {"PyTorch": gap}
    if reference is not None:
        gaps["the source model"] = logit_gap(got, reference(faces))
    for what, value in gaps.items():
        if not value <= EXPORT_TOLERANCE:
            out.unlink()
            raise ValueError(
                f"ONNX logits differ from {what} by {value:.2e} of their scale "
                f"(> {EXPORT_TOLERANCE:g}); nothing written"
            )
    return {
        "onnx": str(out),
        "megabytes": round(out.stat().st_size / 1e6, 2),
        "logit_gap": max(gaps.values()),
        "images_per_s": images_per_second(predictor.outputs, faces),
        "torch_images_per_s": images_per_second(lambda x: _run(graph, x), faces),
    }


@torch.no_grad()
def _run(graph: nn.Module, faces: np.ndarray) -> np.ndarray:
    return graph(torch.from_numpy(faces.astype(np.float32))).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="run folder (with best.pt) or a checkpoint file")
    parser.add_argument("--out", help="ONNX file to write (default: RUN_DIR/model.onnx)")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(argv)
    try:
        report = export_onnx(args.source, args.out, args.opset)
    except (ModelNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
