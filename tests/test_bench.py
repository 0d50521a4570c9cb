import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")

from benchmarks import frozen, report  # noqa: E402
from benchmarks import run as bench  # noqa: E402
from common import results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

FROZEN = {
    "name": "tiny",
    "mode": "frozen",
    "data": {
        "dataset": "synthetic",
        "size": 32,
        "synthetic_persons": 12,
        "synthetic_images_per_person": 4,
    },
    "protocol": {"kind": "kfold", "k": 3, "val_fraction": 0.2},
    "head": {"epochs": 4, "batch_size": 32},
    "matrix": {
        "framework": ["torch"],
        "model": ["mobilenet_v2"],
        "loss": ["mean_variance", "l2"],
        "weights": ["none"],
    },
}


def _preset(tmp_path, data=FROZEN, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _maes(out):
    return {
        p.relative_to(out).as_posix(): json.loads(p.read_text())["fold_mae"]
        for p in sorted((out / "results").glob("*/*.json"))
    }


def test_run_writes_one_result_per_cell_and_fold(tmp_path):
    written = bench.run(_preset(tmp_path), tmp_path / "out", progress=False)
    assert len(written) == 2 * 3
    data = json.loads(written[0].read_text())
    for key in [
        "fold_mae",
        "epochs_run",
        "best_epoch",
        "train_seconds",
        "eval_seconds",
        "train_images_per_s",
        "device",
        "versions",
        "config",
        "fold_hash",
        "preprocess",
    ]:
        assert key in data, key
    assert set(data["predictions"]) == {"file", "person", "true_age", "expected_age", "std"}


def test_killed_between_folds_keeps_finished_results(tmp_path, monkeypatch):
    preset, out = _preset(tmp_path), tmp_path / "out"
    calls = {"n": 0}
    original = frozen.FrozenRunner.run

    def dies_on_the_fourth(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(frozen.FrozenRunner, "run", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        bench.run(preset, out, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*/*.json")}
    assert len(before) == 3
    calls["n"] = 100
    written = bench.run(preset, out, progress=False)
    assert len(written) == 3, "only the unfinished items run again"
    assert all(p.stat().st_mtime_ns == t for p, t in before.items()), "finished work redone"
    assert len(list((out / "results").glob("*/*.json"))) == 6


def test_killed_mid_fold_is_redone(tmp_path, monkeypatch):
    from torch_impl import train

    preset = {
        **FROZEN,
        "mode": "finetune",
        "head": None,
        "train": {"optim": {"epochs": 1, "batch_size": 16}, "max_steps_per_epoch": 1},
        "matrix": {**FROZEN["matrix"], "loss": ["mean_variance"]},
    }
    preset.pop("head")
    path, out = _preset(tmp_path, preset), tmp_path / "out"
    original = train.fit

    def dies_mid_fold(cfg, faces, fold, fold_hash, run_dir, progress=True):
        if fold.name.endswith("-1"):
            (run_dir / "half-written").parent.mkdir(parents=True, exist_ok=True)
            (run_dir / "half-written").write_text("x")
            raise KeyboardInterrupt
        return original(cfg, faces, fold, fold_hash, run_dir, progress)

    monkeypatch.setattr(train, "fit", dies_mid_fold)
    with pytest.raises(KeyboardInterrupt):
        bench.run(path, out, progress=False)
    assert len(list((out / "results").glob("*/*.json"))) == 1
    monkeypatch.setattr(train, "fit", original)
    bench.run(path, out, progress=False)
    assert len(list((out / "results").glob("*/*.json"))) == 3
    assert not list((out / "work").rglob("half-written"))


def test_shards_merged_equal_an_unsharded_run(tmp_path):
    preset = _preset(tmp_path)
    bench.run(preset, tmp_path / "all", progress=False)
    bench.run(preset, tmp_path / "s0", shard=(0, 2), progress=False)
    bench.run(preset, tmp_path / "s1", shard=(1, 2), progress=False)
    assert len(_maes(tmp_path / "s0")) == 3 and len(_maes(tmp_path / "s1")) == 3
    assert bench.merge(tmp_path / "merged", [tmp_path / "s0", tmp_path / "s1"]) == 6
    merged, unsharded = _maes(tmp_path / "merged"), _maes(tmp_path / "all")
    assert merged.keys() == unsharded.keys()
    assert list(merged.values()) == pytest.approx(list(unsharded.values()), abs=1e-6)


def test_status_names_the_missing_items_of_each_shard(tmp_path, capsys):
    out = tmp_path / "out"
    bench.run(_preset(tmp_path), out, shard=(0, 2), progress=False)
    rows = bench.status(out, shards=2)
    counts = [(r["shard"], r["total"], len(r["missing"])) for r in rows]
    assert counts == [("0/2", 3, 0), ("1/2", 3, 3)]
    next((out / "results").glob("*/*.json")).unlink()
    assert sum(len(r["missing"]) for r in bench.status(out, shards=2)) == 4
    assert bench.main(["status", str(out), "--shards", "2"]) == 0
    assert "2 of 6 results" in capsys.readouterr().out
    assert bench.main(["status", str(tmp_path / "empty")]) == 1


@pytest.mark.parametrize("command", ["status", "merge"])
def test_output_into_a_closed_pipe_ends_without_a_traceback(tmp_path, command):
    out = tmp_path / "out"
    bench.run(_preset(tmp_path), out, shard=(0, 2), progress=False)
    args = [str(out), "--shards", "2"] if command == "status" else [str(tmp_path / "m"), str(out)]
    read, write = os.pipe()
    os.close(read)  # as `| head` does once it has its lines
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", command, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr  # as `cat` or `seq` stopped by SIGPIPE
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    if command == "merge":  # the work was done before the line about it could not be written
        assert len(list((tmp_path / "m" / "results").glob("*/*.json"))) == 3


def test_folds_from_other_starting_weights_are_refused(tmp_path, monkeypatch):
    preset = _preset(tmp_path)
    bench.run(preset, tmp_path / "s0", shard=(0, 2), progress=False)
    bench.run(preset, tmp_path / "s1", shard=(1, 2), progress=False)
    # s1 as if it had started from AAF weights trained in another session
    for path in (tmp_path / "s1" / "results").glob("*/*.json"):
        data = results.read_checked_json(path)
        assert data["start_weights"] is None  # weights "none": nothing trained to start from
        data["start_weights"] = "aaf-torch-mobilenet_v2-112px-0c5c6858.pt"
        results.write_checked_json(path, data)  # as that session would have written it
    assert bench.merge(tmp_path / "merged", [tmp_path / "s0"]) == 3
    with pytest.raises(ValueError, match="started from None"):
        bench.merge(tmp_path / "merged", [tmp_path / "s1"])
    # resuming s0 while other weights are at hand
    next((tmp_path / "s0" / "results").glob("*/*.json")).unlink()
    monkeypatch.setattr(bench, "start_weights", lambda cell: "aaf-torch-mobilenet_v2-new.pt")
    with pytest.raises(ValueError, match="put those weights back"):
        bench.run(preset, tmp_path / "s0", shard=(0, 2), progress=False)


def test_mismatched_folds_are_refused(tmp_path):
    bench.run(_preset(tmp_path), tmp_path / "a", progress=False)
    other = {**FROZEN, "protocol": {**FROZEN["protocol"], "seed": 7}}
    other_preset = _preset(tmp_path, other, "other.yaml")
    with pytest.raises(ValueError, match="other folds"):
        bench.run(other_preset, tmp_path / "a", progress=False)
    bench.run(other_preset, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="refusing to merge"):
        bench.merge(tmp_path / "a", [tmp_path / "b"])
    # A foreign result dropped into a folder makes the report refuse to compare.
    foreign = next((tmp_path / "b" / "results").glob("*/*.json"))
    target = tmp_path / "a" / "results" / "torch-x-y-z" / foreign.name
    target.parent.mkdir(parents=True)
    target.write_bytes(foreign.read_bytes())
    with pytest.raises(ValueError, match="cannot be compared"):
        report.write_report(tmp_path / "a")


def test_report_on_both_frameworks(tmp_path):
    pytest.importorskip("keras")
    preset = {
        **FROZEN,
        "matrix": {
            **FROZEN["matrix"],
            "framework": ["torch", "keras"],
            "loss": ["mean_variance", "softmax"],
        },
    }
    out = tmp_path / "out"
    bench.run(_preset(tmp_path, preset), out, progress=False)
    path = report.write_report(out)
    text = path.read_text()
    for cell in ["torch-mobilenet_v2-mean_variance-none", "keras-mobilenet_v2-softmax-none"]:
        assert cell in text
    assert "mobilenet_v2 / mean_variance / none" in text  # the side-by-side row
    assert "mean_variance − softmax" in text  # the loss ablation
    assert "## Uncertainty calibration (test folds)" in text
    cal = report.summarise(report.load_results(out)["torch-mobilenet_v2-mean_variance-none"])
    assert 0 <= cal["calibration"]["after"]["within_90"] <= 1
    assert cal["calibration"]["n_folds"] > 0
    pngs = ["cs_curves.png", "mae_by_decade.png", "scatter.png", "paired_folds.png"]
    for png in [*pngs, "reliability.png"]:
        assert (out / png).stat().st_size > 5000, png


def test_presets_parse():
    for name in [p.stem.removeprefix("bench-") for p in bench.CONFIG_DIR.glob("bench-*.yaml")]:
        preset = bench.load_preset(name)
        cells = bench.expand_cells(preset)
        assert cells, name
        for cell in cells:
            bench.cell_config(preset, cell)
    with pytest.raises(ValueError, match="--shard"):
        bench.parse_shard("3")


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("loss", ["mean_variance", "l2"])
def test_frozen_heads_learn_and_reset_between_folds(framework, loss):
    import numpy as np

    from common.config import Config

    if framework == "keras":
        pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 16)).astype("float32")
    ages = np.clip(40 + 5 * feats @ rng.normal(size=16), 0, 100).astype("float32")
    parts = {"train": np.arange(200), "val": np.arange(200, 250), "test": np.arange(250, 300)}
    head = {"epochs": 100, "lr": 0.03, "batch_size": 64, "weight_decay": 1e-4}
    fit = frozen.torch_head if framework == "torch" else frozen.keras_head
    first = fit(feats, ages, parts, loss, Config(), head)
    second = fit(feats, ages, parts, loss, Config(), head)  # a new fold starts afresh
    baseline = np.abs(ages[parts["val"]] - ages[parts["train"]].mean()).mean()
    assert first[1]["val_mae"] < 0.6 * baseline, (first[1], baseline)
    assert second[1]["val_mae"] == pytest.approx(first[1]["val_mae"], rel=1e-5)
    outputs = first[0](feats[parts["val"]])  # the chosen head's forward, for the calibration
    assert outputs.shape == (len(parts["val"]), 101 if loss == "mean_variance" else 1)
    pred = outputs[:, 0] if loss == "l2" else outputs.argmax(1)
    assert np.abs(pred - ages[parts["val"]]).mean() < 0.8 * baseline


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lopo-aaf-frozen", "lopo-aaf-finetune", "lopo-v2-finetune"])
def test_aaf_presets_run_one_fold_in_both_frameworks(name, tmp_path, monkeypatch):
    """The AAF presets as written, on tiny synthetic faces, from stand-in AAF weights files."""
    pytest.importorskip("keras")
    import torch

    import weights
    from tf_impl.models import create_model as keras_model
    from torch_impl.models import create_model as torch_model

    size = 32
    files = {"torch": tmp_path / "aaf.pt", "keras": tmp_path / "aaf.weights.h5"}
    torch.manual_seed(0)
    torch.save(torch_model("mobilenet_v2", 101, "none", size).state_dict(), files["torch"])
    keras_model("mobilenet_v2", 101, "none", size).save_weights(files["keras"])
    monkeypatch.setattr(
        weights, "aaf_weights", lambda framework, arch, kind="aaf": files[framework]
    )

    preset = bench.load_preset(name)
    preset["data"] = {**FROZEN["data"], "size": size, "synthetic_persons": 6}
    if "head" in preset:
        preset["head"]["epochs"] = 2
    if "train" in preset:
        preset["train"]["optim"]["epochs"] = 1
    written = bench.run(_preset(tmp_path, preset), tmp_path / "out", max_folds=1, progress=False)
    cells = bench.expand_cells(preset)
    assert {c.framework for c in cells} == {"torch", "keras"}
    assert len(written) == len(cells)
    for path in written:
        result = json.loads(path.read_text())
        assert result["pretrained"] is True and result["fold"].startswith("lopo-")
        assert 0 <= result["fold_mae"] < 100
        if preset["mode"] == "finetune":  # what the report's flip and ensemble rows need
            assert set(result["outputs"]) >= {"val", "val_mirrored", "test", "test_mirrored"}


def _fold_result(true_age, expected_age, std, **extra) -> dict:
    """One fold's result as benchmarks.run writes it, with the fields the report reads."""
    return {
        "fold": "lopo-001",
        "fold_mae": 0.0,
        "predictions": {"true_age": true_age, "expected_age": expected_age, "std": std},
        "train_seconds": 1.0,
        "device": "cpu",
        "pretrained": True,
        "framework": "torch",
        "model": "mobilenet_v2",
        "loss": "mean_variance",
        "weights": "aaf",
        **extra,
    }


def test_summary_reports_the_old_separately():
    fold = _fold_result([5.0, 45.0, 65.0, 75.0], [6.0, 41.0, 67.0, 60.0], [1.0, 2.0, 3.0, 4.0])
    s = report.summarise([fold])
    assert s["mae_40_69"] == pytest.approx(3.0) and s["n_40_69"] == 2


def test_inference_rate_is_shown_only_where_enough_images_were_timed():
    def fold(n, **extra):
        return _fold_result([20.0] * n, [21.0] * n, [2.0] * n, **extra)

    few = fold(12, eval_images_per_s=12.0)
    assert report._infer_rate(report.summarise([few, few])) == "–"  # 12 images per fold
    many = fold(report.MIN_TIMED_IMAGES, eval_images_per_s=12.0)
    assert report._infer_rate(report.summarise([many])) == "12"
    # a frozen cell times its backbone over every image of every fold
    frozen = fold(12, feature_seconds=3.0, eval_images_per_s=500.0)
    assert report.summarise([frozen] * 6)["eval_images_timed"] == 72
    assert report._infer_rate(report.summarise([frozen] * 6)) == "500"


def test_keras_from_ported_torch_weights_is_paired_with_torch():
    def cell(framework, weights, maes):
        return {
            "framework": framework,
            "model": "mobilenet_v2",
            "loss": "l2",
            "weights": weights,
            "fold_maes": {f"lopo-{i}": m for i, m in enumerate(maes)},
        }

    cells = {
        "torch-mobilenet_v2-l2-aaf": cell("torch", "aaf", [3.0, 4.0, 5.0]),
        "keras-mobilenet_v2-l2-aaf": cell("keras", "aaf", [2.0, 3.0, 4.0]),
        "keras-mobilenet_v2-l2-aaf-torch": cell("keras", "aaf-torch", [3.0, 4.5, 5.0]),
    }
    pairs = dict(report._framework_pairs(cells))
    assert pairs["mobilenet_v2 / l2 / aaf"]["mean_diff"] == pytest.approx(1.0)
    ported = pairs["mobilenet_v2 / l2 / aaf (Keras: the PyTorch weights ported)"]
    assert ported["mean_diff"] == pytest.approx(-0.5 / 3)
