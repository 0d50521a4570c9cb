"""The released model: its card, its hash check, and agezoo predict right after install."""

import json
from dataclasses import replace
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
    ensembles = weights.released_ensembles()
    if name in ensembles:  # a released ensemble: its members are released files
        assert ensembles[name]["default"] and set(ensembles[name]["members"]) <= set(cards)
        assert not any(c["default"] for c in cards.values())
    else:
        assert name in cards and cards[name]["default"]
    image = make_synthetic(1, 1, size=112, seed=5).images[0]
    Image.fromarray(image).save(tmp_path / "face.png")
    assert predict_main([str(tmp_path / "face.png"), "--fallback-center", "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert 0 <= face["age"] <= 100 and face["std"] > 0 and face["low"] <= face["high"]
    assert np.isfinite([face["age"], face["std"]]).all()


def test_the_shipped_model_gives_the_same_ages_in_any_batch_size():
    """The ONNX path runs small batches for speed; batching must not move an age."""
    predictor = load_predictor(weights.default_age_model())
    faces = np.random.default_rng(4).integers(0, 256, (37, 112, 112, 3), dtype=np.uint8)
    one_call = predictor.outputs(faces, batch_size=len(faces))
    assert predictor.batch_size < len(faces)  # the default splits these 37 faces, raggedly
    np.testing.assert_allclose(predictor.outputs(faces), one_call, atol=1e-4)
    np.testing.assert_allclose(predictor.outputs(faces, batch_size=5), one_call, atol=1e-4)


@pytest.fixture(scope="module")
def keras_run(finished_run, tmp_path_factory) -> Path:
    """A Keras run folder on the PyTorch run's config and folds: its ``model.keras`` is a
    MobileNetV2 with varied BatchNorm statistics and head, so that the port must carry them."""
    keras = pytest.importorskip("keras")
    from common import results
    from tf_impl import models
    from tf_impl.backbones import backbone_of

    run = tmp_path_factory.mktemp("keras-run")
    for name in (results.CONFIG, results.FOLDS):
        (run / name).write_bytes((finished_run / name).read_bytes())
    metrics = json.loads((finished_run / results.METRICS).read_text())
    metrics.update(framework="keras", best_val_mae=metrics["best_val_mae"] + 0.5)
    (run / results.METRICS).write_text(json.dumps(metrics))
    model = models.create_model("mobilenet_v2", 101, "none", 32)
    rng = np.random.default_rng(3)
    for layer in backbone_of(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 1.5, g.shape), rng.uniform(-0.2, 0.2, b.shape),
                 rng.uniform(-0.1, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)]
            )  # fmt: skip
    head = model.get_layer("age_head")
    head.set_weights([w + rng.normal(0, 0.05, w.shape) for w in head.get_weights()])
    model.save(run / results.KERAS_MODEL)
    return run


def test_a_keras_run_releases_through_the_torch_exporter(keras_run, tmp_path):
    """The ONNX file of a Keras run gives the Keras model's own logits (checked within 1e-4 by
    the export, and here again on other faces)."""
    import keras

    from agezoo.release import release
    from common.onnx_predictor import load_predictor as load_onnx

    dest = tmp_path / "released"
    card = release(keras_run, dest, default=False)
    assert card["name"] == "onnx/mobilenet_v2/release-keras" and card["trained_in"] == "keras"
    assert "--framework keras" in card["command"]
    faces = make_synthetic(6, 1, size=32, seed=77).images
    theirs = keras.saving.load_model(keras_run / "model.keras").predict(
        faces.astype("float32"), verbose=0
    )
    onnx = load_onnx(dest / card["weights_file"])
    onnx.flip = False
    np.testing.assert_allclose(onnx.outputs(faces), theirs, atol=1e-4 * np.abs(theirs).max())


def test_the_released_ensemble_is_fitted_on_validation_and_served_by_name(
    finished_run, keras_run, tmp_path, monkeypatch
):
    from agezoo.cards import ENSEMBLE_SUFFIX
    from agezoo.release import release
    from agezoo.release_ensemble import release_ensemble
    from common.losses import expected_age, softmax

    dest = tmp_path / "released"
    with pytest.raises(ValueError, match="not released yet"):
        release_ensemble([finished_run, keras_run], dest)
    torch_card = release(finished_run, dest, default=True)
    keras_card = release(keras_run, dest, default=False)
    card = release_ensemble([finished_run, keras_run], dest, default="member")
    score = card["val"]["default_score"]
    assert set(score) == set(card["members"])
    best = min(score, key=score.get)
    defaults = [json.loads(p.read_text()) for p in dest.glob("*.card.json")]
    assert [c["name"] for c in defaults if c["default"]] == [best] and not card["default"]
    card = release_ensemble([finished_run, keras_run], dest, default="ensemble")
    card = {**card, "default": True} if not card["val"]["beats_every_member"] else card
    if not card["val"]["beats_every_member"]:  # tiny random models: make it the default anyway
        from agezoo.cards import clear_defaults, write_ensemble_card

        clear_defaults(dest)
        write_ensemble_card(dest, card)
    assert card["members"] == [torch_card["name"], keras_card["name"]]
    assert card["val"]["images"] > 0 and 0.25 <= card["temperature"] <= 8
    assert set(card["val"]["member_mae"]) == set(card["members"])
    # one default: the ensemble took it from the PyTorch file
    files = {
        json.loads(p.read_text())["name"]: json.loads(p.read_text())
        for p in dest.glob("*.card.json")
    }
    assert not any(c["default"] for c in files.values())
    (ens_file,) = dest.glob("*" + ENSEMBLE_SUFFIX)
    assert json.loads(ens_file.read_text())["default"]
    assert (dest / ens_file.name.replace(".json", ".md")).is_file()

    monkeypatch.setattr(weights, "RELEASED_DIR", dest)
    monkeypatch.setattr(weights, "ENSEMBLES", weights.released_ensembles())
    for member in files.values():
        monkeypatch.setitem(weights.ENTRIES, member["name"], weights.released_entry(member))
    assert weights.default_age_model() == card["name"]
    both = load_predictor(card["name"])
    assert both.card.members == 2 and both.card.temperature == card["temperature"]
    faces = make_synthetic(5, 1, size=32, seed=8).images
    members = [load_predictor(n) for n in card["members"]]
    for predictor in (both, *members):
        predictor.flip = False
    mean_p = np.mean([softmax(m.outputs(faces)) for m in members], axis=0)
    got = both.estimate(faces)["age"]
    # the expectation of the mean distribution is the mean of the members' ages
    members_age = np.mean([m.estimate(faces)["age"] for m in members], axis=0)
    np.testing.assert_allclose(got, expected_age(np.log(mean_p)), atol=1e-6)
    np.testing.assert_allclose(got, members_age, atol=1e-6)
    # a member released again without the ensemble refitted: its temperature no longer fits
    stale = replace(weights.ENTRIES[card["members"][0]], sha256="0" * 64)
    monkeypatch.setitem(weights.ENTRIES, card["members"][0], stale)
    with pytest.raises(FileNotFoundError, match="refit it"):
        load_predictor(card["name"])

    other = dict(json.loads((finished_run / "metrics.json").read_text()), fold_hash="f" * 64)
    moved = tmp_path / "other-folds"
    moved.mkdir()
    for p in keras_run.iterdir():
        (moved / p.name).write_bytes(p.read_bytes())
    (moved / "metrics.json").write_text(json.dumps({**other, "framework": "keras"}))
    with pytest.raises(ValueError, match="not the release of"):
        release_ensemble([finished_run, moved], dest)


def test_a_card_names_a_pretraining_checkpoint_by_the_command_that_makes_it(tmp_path):
    """A member started from a pretraining run's ``best.pt`` (not from the published copy):
    its card's command names the folder ``agezoo.pretrain`` trains into, never this machine's
    path; a loose weights file is named by its file name alone."""
    from agezoo.release import _initialised_from, _weights_override
    from common import results
    from common.config import load_config, save_config

    run = tmp_path / "somewhere" / "torch-color"
    run.mkdir(parents=True)
    save_config(load_config("pretrain-aaf-appa"), run / results.CONFIG)
    (run / results.METRICS).write_text(json.dumps({"framework": "torch"}))
    best = run / results.TORCH_BEST
    best.write_bytes(b"")
    assert _weights_override(str(best)) == (
        f" model.weights=runs/aaf-appa-torch-mobilenet_v2/{results.TORCH_BEST}"
    )
    assert "agezoo.pretrain --kind aaf-appa" in _initialised_from(str(best), True)
    loose = tmp_path / "mine.pt"
    loose.write_bytes(b"")
    assert _weights_override(str(loose)) == " model.weights=mine.pt"
    assert str(tmp_path) not in _initialised_from(str(loose), True)
    assert _weights_override("aaf-appa-torch") == " model.weights=aaf-appa-torch"


def test_a_final_release_shows_its_held_out_variants_figures_and_is_never_scored(
    finished_run, tmp_path, monkeypatch
):
    """A run trained on its held-out people too (``--kind release-all``) has no test figures
    of its own: its card shows those of the file it replaces, the same recipe without them,
    and ``benchmarks.heldout`` refuses to score it."""
    import shutil

    from agezoo import cards
    from agezoo.release import release
    from benchmarks.heldout import trained_on_held_out
    from common import results
    from common.config import load_config, save_config

    final = tmp_path / "final-run"
    shutil.copytree(finished_run, final)
    cfg = load_config(str(final / results.CONFIG), ["protocol.train_on_test=true"])
    save_config(cfg, final / results.CONFIG)
    metrics = json.loads((final / results.METRICS).read_text())
    metrics = {k: v for k, v in metrics.items() if not k.startswith("test")}
    metrics["calibration"] = {
        k: v for k, v in metrics["calibration"].items() if not k.startswith("test")
    }
    (final / results.METRICS).write_text(json.dumps(metrics))

    dest, heldout = tmp_path / "released", tmp_path / "heldout.json"
    monkeypatch.setattr(cards, "HELDOUT", heldout)
    with pytest.raises(ValueError, match="--heldout-of"):
        release(final, dest)  # nothing it replaces, no variant named
    assert not list(dest.glob("*.onnx"))
    variant = release(finished_run, dest)
    with pytest.raises(ValueError, match="score the held-out variant first"):
        release(final, dest)
    figures = {"n": 10, "mae": 4.2, "band_mean": 5.1, "by_band": {"0-9": [2.0, 10]}}
    entry = {"sha256": variant["sha256"], "set": "appa official valid", "flip": False}
    entry["agezoo"] = {**figures, "within_1std": 0.7, "within_90": 0.9}
    entry["agezoo"]["ci95"] = {"by_band": {"0-9": [1.5, 2.75]}}
    heldout.write_text(json.dumps({"runs": {"x/appa": entry}}))

    card = release(final, dest)
    assert card["trained_on_test"] and card["heldout_of"] == variant["sha256"]
    assert "--kind release-all" in card["command"] and "--heldout-of" in card["command"]
    assert list(card["heldout"].values())[0]["agezoo"]["mae"] == 4.2
    (md,) = dest.glob("*.card.md")
    text = md.read_text()
    assert (
        "figures of its held-out variant" in text
        and "4.20 / 5.10" in text
        and "| its held-out variant |" in text
    )
    assert "none of its own" in text
    assert "0-9 2.00 (10; 95 % 1.50–2.75)" in text  # the band with its interval
    assert sorted(p.name for p in dest.glob("*.onnx")) == [card["weights_file"]]

    monkeypatch.setattr(weights, "RELEASED_DIR", dest)
    assert "a final model" in trained_on_held_out(None, card["sha256"])
    assert "train_on_test" in trained_on_held_out(str(final), None)
    assert trained_on_held_out(str(finished_run), variant["sha256"]) is None
