"""Keras backend of ``agezoo predict``: a run folder's ``model.keras`` or a ``.keras`` file.

The saved model holds its own resize and normalisation, so it takes the aligned crops as
float RGB 0..255. Its card comes from the run folder (``config.yaml``, ``calibration.json``) or,
for an exported file, from the ``.card.json`` written beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from common import results
from common.config import load_config, to_dict
from common.predictor import ModelCard, ModelNotFoundError, Predictor


def card_path(model_file: str | Path) -> Path:
    """Where an exported model's card lives: ``NAME.card.json`` beside ``NAME.keras``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name.split(".")[0] + ".card.json")


def run_card(run_dir: str | Path, framework: str = "keras") -> ModelCard:
    """The card of a run folder, from its ``config.yaml`` and ``calibration.json``."""
    run_dir = Path(run_dir)
    cfg = to_dict(load_config(str(run_dir / results.CONFIG)))
    cal_file = run_dir / results.CALIBRATION
    calibration = json.loads(cal_file.read_text()) if cal_file.is_file() else None
    return ModelCard.from_config(framework, cfg, calibration, source=str(run_dir))


def keras_predictor(model: keras.Model, card: ModelCard) -> Predictor:
    def forward(images: np.ndarray) -> np.ndarray:
        # predict_on_batch runs a compiled function: about 2x the eager call on CPU.
        return np.asarray(model.predict_on_batch(images), dtype=np.float32)

    return Predictor(card, forward)


def load_keras_model(path: str | Path) -> tuple[keras.Model, ModelCard]:
    path = Path(path)
    if path.is_dir():
        file, card = path / results.KERAS_MODEL, None
        if (path / results.CONFIG).is_file():
            card = run_card(path)
    else:
        file, card = path, None
        if card_path(path).is_file():
            card = ModelCard.from_dict(json.loads(card_path(path).read_text()))
    if not file.is_file():
        raise ModelNotFoundError(f"{file}: no such Keras model")
    if card is None:
        raise ModelNotFoundError(
            f"{file}: no card beside it ({card_path(file).name}) and no run folder config; "
            "export models with `python -m tf_impl.export RUN_DIR`"
        )
    import tf_impl.models  # noqa: F401 - registers the custom layers the saved model names

    try:
        model = keras.saving.load_model(file)
    except Exception as exc:  # keras raises several types for a file that is no model
        raise ValueError(f"{file}: not a readable Keras model ({exc})") from exc
    return model, card


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    """The predictor of a run folder (``model.keras``) or an exported ``.keras`` file; Keras
    places the model itself, so ``device`` is not used."""
    return keras_predictor(*load_keras_model(path))
