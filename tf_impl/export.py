"""Export a Keras run to a standalone ``.keras`` file and a TensorFlow SavedModel, checked.

Usage: ``python -m tf_impl.export RUN_DIR [--out DIR]``

Writes ``DIR/age_model.keras`` with its card (``age_model.card.json``: crop geometry, detector,
loss, calibration temperature) for ``agezoo predict --model DIR/age_model.keras``, and
``DIR/saved_model/`` (``model.export``) for TF Serving / TFLite converters. Both take aligned
float RGB crops in 0..255, NHWC, any batch size. Each artefact is loaded back and its logits
compared with the run's model on faces it has not seen; the export fails beyond 1e-4.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np

from common.export_parity import EXPORT_TOLERANCE, images_per_second, logit_gap
from common.predictor import ModelNotFoundError
from common.results import atomic_write_text
from common.synthetic import make_synthetic
from tf_impl.predictor import card_path, load_keras_model


def _dir_megabytes(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 2)


def export_keras(run_dir: str | Path, out: str | Path | None = None) -> dict:
    model, card = load_keras_model(run_dir)
    out = Path(out) if out else Path(run_dir) / "export"
    out.mkdir(parents=True, exist_ok=True)
    faces = make_synthetic(n_persons=8, images_per_person=1, size=card.size, seed=12345).images
    x = faces.astype(np.float32)
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    report = {"keras_images_per_s": images_per_second(model.predict_on_batch, x)}

    keras_file = out / "age_model.keras"
    tmp = out / ".tmp.age_model.keras"
    model.save(tmp)
    tmp.replace(keras_file)
    atomic_write_text(card_path(keras_file), card.to_json())
    again = keras.saving.load_model(keras_file)
    diff = logit_gap(keras.ops.convert_to_numpy(again(x, training=False)), ref)
    _check(diff, keras_file)
    report.update(keras=str(keras_file), keras_megabytes=_dir_megabytes(keras_file))
    report["keras_logit_gap"] = diff

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        saved = out / "saved_model"
        tmp_dir = out / ".tmp.saved_model"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        model.export(str(tmp_dir), format="tf_saved_model", verbose=False)
        shutil.rmtree(saved, ignore_errors=True)
        tmp_dir.rename(saved)
        loaded = tf.saved_model.load(str(saved))  # keep it referenced: serve uses its variables
        diff = logit_gap(loaded.serve(tf.constant(x)).numpy(), ref)
        _check(diff, saved)
        report.update(saved_model=str(saved), saved_model_megabytes=_dir_megabytes(saved))
        report["saved_model_logit_gap"] = diff
        report["saved_model_images_per_s"] = images_per_second(
            lambda b: loaded.serve(tf.constant(b)), x
        )
    return report


def _check(diff: float, what: Path) -> None:
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"{what}: logits differ from the run's model by {diff:.2e} of their scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a Keras run folder (with model.keras and config.yaml)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/export)")
    args = parser.parse_args(argv)
    try:
        report = export_keras(args.run_dir, args.out)
    except (ModelNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
