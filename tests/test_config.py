import pytest

from common.config import Config, apply_overrides, load_config, save_config, training_presets


def test_overrides_and_roundtrip(tmp_path):
    cfg = load_config(
        None,
        ["optim.lr=3e-4", "data.size=96", "augment=false", "model.input_size=128", "data.root=/x"],
    )
    assert cfg.optim.lr == 3e-4 and cfg.data.size == 96 and cfg.augment is False
    assert cfg.model.input_size == 128 and cfg.data.root == "/x"
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg


@pytest.mark.parametrize("preset", training_presets())
def test_every_preset_loads_and_roundtrips(preset, tmp_path):
    cfg = load_config(preset)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown key"),
        ("optim.epochs=2.5", "not an integer"),
        ("nosuch.x=1", "no config section"),
        ("augment=maybe", "not a boolean"),
        ("lr", "key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(Config(), [override])


def test_unknown_preset_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preset"):
        load_config("nonexistent-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(str(bad))


def test_a_run_made_before_a_setting_existed_still_resumes_with_its_default():
    from common.config import comparable, to_dict

    now = to_dict(Config())
    older = to_dict(Config())
    del older["loss"]["label_sigma"], older["optim"]["band_balance"]
    assert comparable(older) == comparable(now)
    changed = to_dict(load_config(None, ["optim.band_balance=0.5"]))
    assert comparable(changed) != comparable(now)
    assert comparable({"optim": {"gone": 1}}) != comparable(now)
