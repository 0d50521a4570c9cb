import json

import pytest

from benchmarks import recipe


def test_variants_parse_and_bad_ones_are_named():
    assert recipe.parse_variant("base") == ("base", [])
    assert recipe.parse_variant("mix=data.size=128,optim.band_balance=0.5") == (
        "mix",
        ["data.size=128", "optim.band_balance=0.5"],
    )
    with pytest.raises(ValueError, match="not key=value"):
        recipe.parse_variant("x=data.size")
    with pytest.raises(ValueError, match="the name"):
        recipe.parse_variant("a b=data.size=1")


def test_trials_on_synthetic_faces_report_validation_figures_only(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "trials"
    args = ["quick", "--out", str(out), "--json", str(tmp_path / "r.json")]
    args += ["--variant", "base", "--variant", "sigma=loss.label_sigma=2", "--shard", "1/2"]
    common = ["--", "data.dataset=synthetic", "data.size=32", "model.name=mobilenet_v2"]
    common += ["model.weights=none", "optim.epochs=1", "max_steps_per_epoch=2", "tensorboard=false"]
    assert recipe.main(args + common) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["variant"] for r in report["variants"]] == ["sigma"]  # shard 1/2: the second
    assert report["missing"] == ["base"] and report["chosen_on"] == "validation people only"
    (row,) = report["variants"]
    assert row["overrides"] == ["loss.label_sigma=2"] and len(row["val_mae_by_epoch"]) == 1
    assert not any(key.startswith("test") for key in row)
    assert "label_sigma: 2.0" in (out / "torch-sigma" / "config.yaml").read_text()
    assert "not finished yet: base" in capsys.readouterr().out
