"""The released model: its card, its hash check, and agezoo predict right after install."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import weights
from agezoo.backends import load_predictor
from agezoo.cli import predict_main
from common.synthetic import make_synthetic

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished PyTorch run (metrics, config, folds, best.pt), as training leaves it."""
    from torch_impl import train

    run = tmp_path_factory.mktemp("release-run")
    code = train.main(
        [
            "quick",
            "model.name=mobilenet_v2",
            "model.weights=none",
            "data.dataset=synthetic",
            "data.size=32",
            "data.synthetic_persons=16",
            "data.synthetic_images_per_person=4",
            "optim.epochs=1",
            "max_steps_per_epoch=1",
            "tensorboard=false",
            f"run_dir={run}",
        ]
    )
    assert code == 0
    return run


def test_release_writes_a_checked_card_and_refuses_a_changed_byte(
    finished_run, tmp_path, monkeypatch
):
    from agezoo.release import release

    dest = tmp_path / "released"
    card = release(finished_run, dest)
    onnx_file = dest / card["weights_file"]
    assert (
        json.loads((dest / f"{onnx_file.stem}.card.json").read_text())["sha256"] == card["sha256"]
    )
    weights.check_sha256(onnx_file, card["sha256"])
    markdown = (dest / f"{onnx_file.stem}.card.md").read_text()
    assert card["sha256"] in markdown and "never score it on" in markdown.lower()
    assert "FG-NET" in card["never_score_on"] and set(card["terms"]) >= {"FG-NET"}

    name = "test/release"
    monkeypatch.setattr(weights, "RELEASED_DIR", dest)
    weights.register(weights.released_entry({**card, "name": name}))
    try:
        predictor = load_predictor(name)
        assert predictor.card.framework == "onnx" and predictor.card.size == 32
        data = bytearray(onnx_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx_file.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="does not match"):
            load_predictor(name)
    finally:
        weights.ENTRIES.pop(name, None)

    again = release(finished_run, dest)  # the same name again: the older file is replaced
    assert sorted(p.name for p in dest.glob("*.onnx")) == [again["weights_file"]]


def test_the_shipped_model_predicts_with_no_data_cache_or_weights(tmp_path, monkeypatch, capsys):
    """What a fresh clone does right after make setup: no data set, empty caches, no network."""
    cards = weights.released_cards()
    assert cards, "weights/released/ holds no model card"
    total = sum((weights.RELEASED_DIR / c["weights_file"]).stat().st_size for c in cards.values())
    assert total <= 25e6
    for card in cards.values():
        weights.check_sha256(weights.RELEASED_DIR / card["weights_file"], card["sha256"])
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path / "empty-weights"))
    for var in ("AGEZOO_FGNET_DIR", "AGEZOO_AAF_DIR", "AGEZOO_APPA_DIR"):
        monkeypatch.delenv(var, raising=False)
    name = weights.default_age_model()
    assert name in cards and cards[name]["default"]
    image = make_synthetic(1, 1, size=112, seed=5).images[0]
    Image.fromarray(image).save(tmp_path / "face.png")
    assert predict_main([str(tmp_path / "face.png"), "--fallback-center", "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert 0 <= face["age"] <= 100 and face["std"] > 0 and face["low"] <= face["high"]
    assert np.isfinite([face["age"], face["std"]]).all()
