import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_time_counts_every_epoch

torch = pytest.importorskip("torch")

from common.config import load_config  # noqa: E402
from common.prepare import build_folds, load_faces  # noqa: E402
from common.results import read_predictions  # noqa: E402
from common.splits import folds_hash  # noqa: E402
from torch_impl import train  # noqa: E402
from torch_impl.models import create_model  # noqa: E402

TINY = [
    "model.name=mobilenet_v2",
    "model.weights=none",
    "data.dataset=synthetic",
    "data.size=48",
    "optim.batch_size=32",
    "optim.lr=3e-3",
    "tensorboard=false",
    "data.synthetic_persons=60",
    "data.synthetic_images_per_person=8",
]


def _setup(*overrides):
    cfg = load_config(None, TINY + list(overrides))
    faces = load_faces(cfg.data)
    folds = build_folds(cfg.protocol, faces.persons)
    return cfg, faces, folds[0], folds_hash(folds)


@pytest.mark.slow
def test_learns_synthetic_ages(tmp_path):
    """The whole loop learns age with the paper's loss (the other losses' learning is checked
    on frozen features in test_bench, and their maths in the loss tests)."""
    cfg, faces, fold, digest = _setup("loss.name=mean_variance", "optim.epochs=20")
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    idx = fold.indices(faces.persons)
    baseline = np.abs(faces.ages[idx["train"]].mean() - faces.ages[idx["test"]]).mean()
    assert metrics["test_mae"] < 0.6 * baseline, (metrics["test_mae"], baseline)
    assert metrics["test_mae"] < 0.6 * baseline, (metrics["test_mae"], baseline)


@pytest.mark.parametrize(
    "loss, extra",
    [
        ("softmax", ()),
        ("l2", ()),
        ("mean_variance", ("loss.label_sigma=2", "optim.band_balance=0.5")),
    ],
)
def test_other_losses_run_end_to_end(loss, extra, tmp_path):
    cfg, faces, fold, digest = _setup(
        f"loss.name={loss}",
        "optim.epochs=1",
        "max_steps_per_epoch=2",
        "data.synthetic_persons=16",
        *extra,
    )
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    assert metrics["loss"] == loss and np.isfinite(metrics["test_mae"])
    val = metrics["val"]  # the validation people's own figures, for recipe choices
    assert val["n"] == len(fold.indices(faces.persons)["val"])
    assert val["band_mean"] == pytest.approx(np.mean([m for m, _ in val["mae_by_band"].values()]))
    preds = read_predictions(tmp_path / "predictions.csv")
    assert len(preds["expected_age"]) == len(fold.indices(faces.persons)["test"])
    assert np.isfinite(preds["std"]).all() == (loss != "l2")


def test_vote_stds_become_the_targets_widths(tmp_path):
    cfg, faces, fold, digest = _setup(
        "optim.epochs=1",
        "max_steps_per_epoch=2",
        "data.synthetic_persons=16",
        "loss.vote_sigma=true",
        "loss.label_sigma=1.5",
    )
    faces.age_stds = np.where(np.arange(len(faces)) % 2 == 0, 3.0, np.nan).astype(np.float32)
    trainer = train.Trainer(cfg, faces, fold, torch.device("cpu"))
    assert trainer.sigmas.tolist()[:4] == [3.0, 1.5, 3.0, 1.5]  # no std known: label_sigma
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    assert np.isfinite(metrics["test_mae"])


def test_run_folder_and_checkpoint_round_trip(tmp_path):
    cfg, faces, fold, digest = _setup("optim.epochs=2", "max_steps_per_epoch=2")
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    for name in ["config.yaml", "log.csv", "last.pt", "best.pt", "predictions.csv", "metrics.json"]:
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["fold_hash"] == digest and saved["preprocess"] == faces.key
    assert saved["epochs_run"] == 2 and 0 <= saved["best_epoch"] < 2
    preds = read_predictions(tmp_path / "predictions.csv")
    assert set(preds["person"]) == set(fold.test)
    assert saved["test_mae"] == pytest.approx(
        np.abs(preds["expected_age"] - preds["true_age"]).mean(), abs=1e-3
    )
    # The best checkpoint, loaded into a fresh model, gives the same predictions.
    model = create_model(
        "mobilenet_v2", 101, weights=str(tmp_path / "best.pt"), input_size=48
    ).eval()
    idx = fold.indices(faces.persons)["test"]
    x = train.to_input(torch.from_numpy(faces.images[idx]), model.entry.mean, model.entry.std, 48)
    from common.losses import decode

    pred, _ = decode(model(x).detach().numpy())
    np.testing.assert_allclose(pred, preds["expected_age"], atol=1e-3)
    assert metrics["test_mae"] == saved["test_mae"]


def test_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    overrides = ("optim.epochs=3", "max_steps_per_epoch=2", "data.synthetic_persons=16")
    cfg, faces, fold, digest = _setup(*overrides)
    straight = train.fit(cfg, faces, fold, digest, tmp_path / "straight", progress=False)

    calls = {"n": 0}
    original = train.Trainer.train_one_epoch

    def dies_in_second_epoch(self, epoch, progress=True):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, epoch, progress)

    monkeypatch.setattr(train.Trainer, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, faces, fold, digest, tmp_path / "cut", progress=False)
    monkeypatch.setattr(train.Trainer, "train_one_epoch", original)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["epoch"] == 0
    assert not (tmp_path / "cut" / "metrics.json").exists()

    cfg_resume, *_ = _setup(*overrides, "resume=true")
    resumed = train.fit(cfg_resume, faces, fold, digest, tmp_path / "cut", progress=False)
    assert "resuming" in capsys.readouterr().out
    log = (tmp_path / "cut" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1", "2"]
    assert_time_counts_every_epoch(tmp_path / "cut", resumed)
    # On the CPU, interrupted + resumed equals the uninterrupted run.
    assert resumed["test_mae"] == pytest.approx(straight["test_mae"], abs=1e-5)


def test_resume_refuses_another_config(tmp_path):
    cfg, faces, fold, digest = _setup("optim.epochs=1", "max_steps_per_epoch=1")
    train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    other, *_ = _setup("optim.epochs=1", "max_steps_per_epoch=1", "optim.lr=0.1", "resume=true")
    with pytest.raises(ValueError, match="another config"):
        train.fit(other, faces, fold, digest, tmp_path, progress=False)


def test_cli_on_synthetic(tmp_path, capsys):
    code = train.main(
        ["quick", *TINY, "optim.epochs=1", "max_steps_per_epoch=2", f"run_dir={tmp_path}"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "test MAE" in out and "SYNTHETIC" in out and str(tmp_path / "best.pt") in out
    assert json.loads((tmp_path / "folds.json").read_text())["sha256"]


def test_cli_bad_override(capsys):
    assert train.main(["quick", "optim.lrr=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_augment_keeps_shape_and_changes_pixels():
    images = torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8)
    out = train.augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    again = train.augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.fgnet
def test_short_real_fgnet_run(fgnet_dir, tmp_path):
    code = train.main(
        [
            "quick",
            "model.name=mobilenet_v2",
            "model.weights=none",
            "data.size=48",
            "optim.epochs=1",
            "max_steps_per_epoch=2",
            "optim.batch_size=16",
            "tensorboard=false",
            f"run_dir={tmp_path}",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"] == "fgnet" and metrics["synthetic"] is False
    assert metrics["test"]["n"] > 100 and np.isfinite(metrics["test_mae"])


@pytest.mark.slow
def test_distributed_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "torch_impl.train",
        "quick",
        *TINY,
        "optim.epochs=2",
        "max_steps_per_epoch=2",
        f"run_dir={tmp_path}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and np.isfinite(metrics["test_mae"])


def test_a_damaged_checkpoint_is_named_and_never_loaded(tmp_path):
    from common.runner import ResumeError
    from torch_impl.predictor import load_checkpoint

    cfg, faces, fold, digest = _setup("optim.epochs=1", "max_steps_per_epoch=1")
    train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    for name in ("best.pt", "last.pt"):
        data = bytearray((tmp_path / name).read_bytes())
        data[len(data) * 3 // 4] ^= 0x5A  # inside a weight: torch.load alone would not notice
        (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="best.pt: changed since it was written"):
        load_checkpoint(tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    cfg_resume, *_ = _setup("optim.epochs=2", "max_steps_per_epoch=1", "resume=true")
    with pytest.raises(ResumeError, match="last.pt: changed since it was written"):
        train.fit(cfg_resume, faces, fold, digest, tmp_path, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_a_run_without_checkpoints_writes_none_and_picks_the_same_epoch(tmp_path):
    cfg, faces, fold, digest = _setup(
        "optim.epochs=2", "max_steps_per_epoch=2", "data.synthetic_persons=16"
    )
    with_files = train.fit(cfg, faces, fold, digest, tmp_path / "a", progress=False)
    ends = []
    without = train.fit(
        cfg, faces, fold, digest, tmp_path / "b", progress=False, checkpoints=False,
        on_epoch_end=ends.append,
    )  # fmt: skip
    assert ends == [0, 1]  # the hook the throughput benchmark times the bare model in
    assert {p.name for p in (tmp_path / "a").glob("*.pt")} == {"best.pt", "last.pt"}
    assert not list((tmp_path / "b").glob("*.pt"))
    assert without["best_epoch"] == with_files["best_epoch"]
    assert without["epochs_run"] == with_files["epochs_run"] == 2  # the log is kept
    assert without["test_mae"] == pytest.approx(with_files["test_mae"], abs=1e-4)
