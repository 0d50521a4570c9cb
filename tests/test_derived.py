"""The report's derived cells: test-time flip and both frameworks' ensemble, from kept outputs."""

import numpy as np
import pytest
import yaml

from benchmarks import derived
from common import results
from common.ensemble import mean_distribution
from common.losses import decode_outputs

K = 30  # ages 0..29


def _fold(cell, fold, rng, n_val=12, n_test=5, files=None, val_ages=None):
    framework = cell.split("-")[0]
    val_ages = val_ages if val_ages is not None else rng.integers(0, K, n_val).astype(float)
    true = rng.integers(0, K, n_test).astype(float)
    outputs = {
        k: rng.normal(0, 2, (len(val_ages) if k.startswith("val") else n_test, K)).tolist()
        for k in ("val", "val_mirrored", "test", "test_mirrored")
    }
    outputs["val_true_age"] = list(val_ages)
    return {
        "cell": cell,
        "fold": fold,
        "fold_hash": "h",
        "preprocess": "p",
        "fold_mae": 0.0,
        "framework": framework,
        "model": "mobilenet_v2",
        "loss": "mean_variance",
        "weights": "aaf-appa",
        "device": "cpu",
        "pretrained": True,
        "train_seconds": 10.0,
        "eval_seconds": 0.1,
        "predictions": {
            "file": files or [f"{fold}-{i}.jpg" for i in range(n_test)],
            "person": [fold] * n_test,
            "true_age": true.tolist(),
            "expected_age": [0.0] * n_test,
            "std": [1.0] * n_test,
        },
        "outputs": outputs,
    }


def _pair(rng, folds=("lopo-001", "lopo-002")):
    torch_folds, keras_folds = [], []
    for name in folds:
        t = _fold("torch-mobilenet_v2-mean_variance-aaf-appa", name, rng)
        k = _fold("keras-mobilenet_v2-mean_variance-aaf-appa", name, rng)
        k["outputs"]["val_true_age"] = t["outputs"]["val_true_age"]
        k["predictions"]["true_age"] = t["predictions"]["true_age"]
        torch_folds.append(t)
        keras_folds.append(k)
    return torch_folds, keras_folds


def test_the_ensemble_ages_are_its_mean_distributions_expectation_at_its_temperature():
    a, b = _pair(np.random.default_rng(0))
    joined = derived.ensemble("ensemble-x", a, b, flip=False)
    assert [f["fold"] for f in joined] == ["lopo-001", "lopo-002"]
    for fold, fa, fb in zip(joined, a, b, strict=True):
        t = fold["calibration"]["temperature"]
        logp = mean_distribution([np.array(fa["outputs"]["test"]), np.array(fb["outputs"]["test"])])
        age, std = decode_outputs(logp, "mean_variance", t)
        np.testing.assert_allclose(fold["predictions"]["expected_age"], age, atol=1e-9)
        np.testing.assert_allclose(fold["predictions"]["std"], std, atol=1e-9)
        true = np.array(fa["predictions"]["true_age"])
        assert fold["fold_mae"] == pytest.approx(np.abs(age - true).mean())
        assert fold["members"] == [fa["cell"], fb["cell"]] and fold["framework"] == "ensemble"
        # calibrated on the validation people alone: the temperature ignores the test outputs
        val = mean_distribution([np.array(fa["outputs"]["val"]), np.array(fb["outputs"]["val"])])
        alone = results.calibrate_run("mean_variance", val, fa["outputs"]["val_true_age"])
        assert t == pytest.approx(alone["temperature"])


def test_at_temperature_one_the_ensemble_age_is_the_mean_of_the_members_ages():
    a, b = _pair(np.random.default_rng(1))
    logp = mean_distribution([np.array(a[0]["outputs"]["test"]), np.array(b[0]["outputs"]["test"])])
    age, _ = decode_outputs(logp, "mean_variance", 1.0)
    age_a, _ = decode_outputs(np.array(a[0]["outputs"]["test"]), "mean_variance", 1.0)
    age_b, _ = decode_outputs(np.array(b[0]["outputs"]["test"]), "mean_variance", 1.0)
    np.testing.assert_allclose(age, (age_a + age_b) / 2, atol=1e-9)


def test_the_flip_averages_both_passes_and_equals_plain_when_the_mirror_is_the_same():
    rng = np.random.default_rng(2)
    fold = _fold("torch-mobilenet_v2-mean_variance-aaf-appa", "lopo-001", rng)
    same = {**fold, "outputs": {**fold["outputs"]}}
    same["outputs"]["val_mirrored"] = same["outputs"]["val"]
    same["outputs"]["test_mirrored"] = same["outputs"]["test"]
    plain = derived.score(same, "plain", *derived._passes(same, False))
    (flip,) = derived.flipped(same["cell"], [same])
    assert flip["cell"] == same["cell"] + "+flip"
    assert flip["predictions"]["expected_age"] == pytest.approx(
        plain["predictions"]["expected_age"]
    )
    (flip,) = derived.flipped(fold["cell"], [fold])
    o = fold["outputs"]
    avg = (np.array(o["test"]) + np.array(o["test_mirrored"])) / 2
    age, _ = decode_outputs(avg, "mean_variance", flip["calibration"]["temperature"])
    np.testing.assert_allclose(flip["predictions"]["expected_age"], age, atol=1e-9)


def test_an_ensemble_of_folds_with_other_people_is_refused():
    a, b = _pair(np.random.default_rng(3))
    b[1]["predictions"]["file"] = ["someone-else.jpg"] * 5
    with pytest.raises(ValueError, match="lopo-002: .* scored other images"):
        derived.ensemble("ensemble-x", a, b, flip=False)


def test_derived_cells_and_their_pairs_cover_folds_both_frameworks_finished():
    a, b = _pair(np.random.default_rng(4))
    by_cell = {a[0]["cell"]: a, b[0]["cell"]: b[:1]}  # Keras finished one fold of two
    cells, pairs = derived.derived_cells(by_cell)
    eid = "ensemble-mobilenet_v2-mean_variance-aaf-appa"
    assert set(cells) == {a[0]["cell"] + "+flip", b[0]["cell"] + "+flip", eid, eid + "+flip"}
    assert [f["fold"] for f in cells[eid]] == ["lopo-001"]
    assert (eid + "+flip", b[0]["cell"] + "+flip") in pairs
    assert (a[0]["cell"] + "+flip", a[0]["cell"]) in pairs
    old = {
        k: [{kk: vv for kk, vv in f.items() if kk != "outputs"} for f in v]
        for k, v in by_cell.items()
    }
    assert derived.derived_cells(old) == ({}, [])  # results made before outputs were kept


def test_a_finetune_benchmark_reports_flip_and_ensemble_rows(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    from benchmarks import report
    from benchmarks import run as bench

    preset = {
        "name": "tiny-finetune",
        "mode": "finetune",
        "data": {"dataset": "synthetic", "size": 32, "synthetic_persons": 9,
                 "synthetic_images_per_person": 4},
        "protocol": {"kind": "kfold", "k": 3, "val_fraction": 0.2},
        "train": {"optim": {"epochs": 1, "batch_size": 8}, "max_steps_per_epoch": 1},
        "matrix": {"framework": ["torch", "keras"], "model": ["mobilenet_v2"],
                   "loss": ["mean_variance"], "weights": ["none"]},
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(preset))
    out = tmp_path / "out"
    bench.run(str(path), out, max_folds=2, progress=False)
    kept = results.read_checked_json(
        out / "results/torch-mobilenet_v2-mean_variance-none/kfold3-0.json"
    )
    assert len(kept["outputs"]["test"]) == len(kept["predictions"]["true_age"])
    assert "test_mae" in kept["flip"]  # the run's own flip figures, beside the plain ones
    text = report.write_report(out).read_text()
    assert "| ensemble-mobilenet_v2-mean_variance-none | 2/3 (partial) |" in text
    assert "| torch-mobilenet_v2-mean_variance-none+flip | 2/3 (partial) |" in text
    assert (
        "| ensemble-mobilenet_v2-mean_variance-none+flip − "
        "keras-mobilenet_v2-mean_variance-none+flip | 2 |" in text
    )
