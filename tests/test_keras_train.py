import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from conftest import TINY_KERAS, assert_time_counts_every_epoch, tiny_keras_entry  # noqa: E402

from common.config import load_config, save_config  # noqa: E402
from common.prepare import build_folds, load_faces  # noqa: E402
from common.results import read_predictions  # noqa: E402
from common.splits import folds_hash, load_folds  # noqa: E402
from tf_impl import train  # noqa: E402

# The loop's mechanics on a three-convolution network; learning itself on MobileNetV2.
TINY = [
    f"model.name={TINY_KERAS}",
    "model.weights=none",
    "data.dataset=synthetic",
    "data.size=48",
    "optim.batch_size=32",
    "optim.lr=3e-3",
    "tensorboard=false",
    "data.synthetic_persons=60",
    "data.synthetic_images_per_person=8",
]


@pytest.fixture(autouse=True, scope="module")
def _tiny_model():
    """The three-convolution network in the model registry while this module's tests run."""
    from tf_impl import models

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(models.REGISTRY, TINY_KERAS, tiny_keras_entry())
        yield


def _setup(*overrides):
    cfg = load_config(None, TINY + list(overrides))
    faces = load_faces(cfg.data)
    folds = build_folds(cfg.protocol, faces.persons)
    return cfg, faces, folds[0], folds_hash(folds)


@pytest.mark.slow
def test_learns_synthetic_ages(tmp_path):
    """The whole loop learns age with the paper's loss (the other losses' learning is checked
    on frozen features in test_bench, and their maths in the loss tests)."""
    cfg, faces, fold, digest = _setup(
        "model.name=mobilenet_v2", "loss.name=mean_variance", "optim.epochs=20"
    )
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    idx = fold.indices(faces.persons)
    baseline = np.abs(faces.ages[idx["train"]].mean() - faces.ages[idx["test"]]).mean()
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


def test_cli_run_folder_and_keras_round_trip(tmp_path, capsys):
    code = train.main(
        [
            "quick",
            *TINY,
            "optim.epochs=2",
            "max_steps_per_epoch=2",
            "data.synthetic_persons=16",
            f"run_dir={tmp_path}",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "test MAE" in out and "SYNTHETIC" in out and str(tmp_path / "model.keras") in out
    for name in [
        "config.yaml",
        "folds.json",
        "log.csv",
        "best.weights.h5",
        "model.keras",
        "predictions.csv",
        "metrics.json",
    ]:
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    folds, digest, _ = load_folds(tmp_path / "folds.json")
    assert saved["fold_hash"] == digest and saved["epochs_run"] == 2
    fold = folds[0]
    preds = read_predictions(tmp_path / "predictions.csv")
    assert set(preds["person"]) == set(fold.test)
    # The saved .keras model, loaded afresh, reproduces the written predictions.
    faces = load_faces(load_config(None, TINY).data)
    model = keras.saving.load_model(tmp_path / "model.keras")
    pred, _ = train.predict(model, faces, fold.indices(faces.persons)["test"], "mean_variance")
    np.testing.assert_allclose(pred, preds["expected_age"], atol=1e-3)
    assert saved["test_mae"] == pytest.approx(np.abs(pred - preds["true_age"]).mean(), abs=1e-3)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_interrupted_run_resumes(tmp_path, monkeypatch, capsys):
    overrides = ("optim.epochs=3", "max_steps_per_epoch=2", "data.synthetic_persons=16")
    cfg, faces, fold, digest = _setup(*overrides)
    original = train._trackers
    monkeypatch.setattr(train, "_trackers", lambda c, r: [*original(c, r), _Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    monkeypatch.setattr(train, "_trackers", original)
    assert (tmp_path / "backup").is_dir() and not (tmp_path / "metrics.json").exists()
    cfg_resume, *_ = _setup(*overrides, "resume=true")
    metrics = train.fit(cfg_resume, faces, fold, digest, tmp_path, progress=True)
    assert "resuming" in capsys.readouterr().out
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1", "2"]
    assert metrics["epochs_run"] == 3
    assert_time_counts_every_epoch(tmp_path, metrics)


def test_resume_refuses_another_config(tmp_path):
    cfg, faces, fold, digest = _setup("optim.epochs=1")
    save_config(cfg, tmp_path / "config.yaml")
    (tmp_path / "backup").mkdir()  # the state an interrupted run leaves
    other, *_ = _setup("optim.epochs=1", "optim.lr=0.1", "resume=true")
    with pytest.raises(ValueError, match="another config"):
        train.fit(other, faces, fold, digest, tmp_path, progress=False)


def test_batches_cover_the_indices_once():
    faces = load_faces(load_config(None, TINY).data)
    idx = np.arange(0, 100)
    batches = train.FaceBatches(faces.images, faces.ages, idx, 32)
    got = np.concatenate([batches[i][1] for i in range(len(batches))])
    np.testing.assert_array_equal(got, faces.ages[idx])
    shuffled = train.FaceBatches(faces.images, faces.ages, idx, 32, shuffle=True, seed=1)
    assert len(shuffled) == 3 and shuffled[0][0].dtype == np.float32


@pytest.mark.fgnet
def test_short_real_fgnet_run(fgnet_dir, tmp_path):
    code = train.main(
        [
            "quick",
            f"model.name={TINY_KERAS}",
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
    assert metrics["dataset"] == "fgnet" and metrics["framework"] == "keras"
    assert metrics["test"]["n"] > 100 and np.isfinite(metrics["test_mae"])


def test_augment_is_one_similarity_plus_flip():
    from tf_impl.augment import FaceAugment

    x = np.zeros((6, 32, 32, 3), "float32")
    x[:, 10:14, 4:8] = 255
    still = FaceAugment(scale=0, rotation=0, shift=0, brightness=0, contrast=0, seed=1)
    out = keras.ops.convert_to_numpy(still(x, training=True))
    for image in out:  # each image is either unchanged or mirrored exactly
        assert np.allclose(image, x[0]) or np.allclose(image, x[0][:, ::-1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(still(x, training=False)), x)
    moved = keras.ops.convert_to_numpy(FaceAugment(seed=2)(x, training=True))
    assert moved.shape == x.shape and not np.allclose(moved, x)
    assert moved.min() >= 0 and moved.max() <= 255


@pytest.mark.parametrize("epochs", [1, 4, 9])
def test_step_schedule_shorter_than_one_step(epochs):
    """A step schedule whose first drop lies beyond the run keeps the first rate."""
    cfg = load_config(
        None,
        [
            f"optim.epochs={epochs}",
            "optim.schedule=step",
            "optim.step_size=4",
            "optim.lr=0.01",
            "optim.gamma=0.1",
            "optim.name=sgd",
        ],
    )
    opt = train.make_optimizer(cfg, steps_per_epoch=10)
    rate = opt.learning_rate
    schedule = opt._learning_rate
    last = float(schedule(10 * epochs - 1)) if callable(schedule) else float(rate)
    assert last == pytest.approx(0.01 * 0.1 ** ((epochs - 1) // 4))


def test_memory_settings_for_the_cpu_loop(monkeypatch):
    import os
    import sys

    # Set on import of tf_impl, before TensorFlow makes its first CPU tensor.
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
    if sys.platform == "linux":
        assert train.keep_freed_memory()  # glibc accepts the thresholds
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not train.keep_freed_memory()  # the user's own glibc setting is left alone


def test_outputs_cover_every_index_in_order():
    from common.synthetic import make_synthetic

    faces = make_synthetic(4, 5, 32, seed=0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    idx = np.array([7, 3, 19, 0, 11])
    out = train.outputs(model, faces, idx, batch_size=2)  # ragged last batch
    np.testing.assert_allclose(out, faces.images[idx].mean(axis=(1, 2)), rtol=1e-5)
    assert train.outputs(model, faces, idx[:0]).shape == (0, 3)


def test_the_train_step_is_compiled_on_jax_and_xla_stays_opt_in_on_tensorflow(monkeypatch):
    # Without jit, JAX runs the step op by op: ResNet-34 four times slower on a CPU.
    cfg = load_config(None, ["xla=false"])
    monkeypatch.setattr(train.keras.config, "backend", lambda: "jax")
    assert train._jit_compile(cfg, gpus=0) is True
    monkeypatch.setattr(train.keras.config, "backend", lambda: "tensorflow")
    assert train._jit_compile(cfg, gpus=1) is False
    assert train._jit_compile(load_config(None, ["xla=true"]), gpus=1) is True
    assert train._jit_compile(load_config(None, ["xla=true"]), gpus=0) is False


def test_balanced_batches_follow_the_common_order():
    from common.sampling import epoch_order

    faces = load_faces(load_config(None, TINY).data)
    idx = np.arange(0, 96)
    batches = train.FaceBatches(
        faces.images, faces.ages, idx, 32, shuffle=True, seed=2, band_balance=1.0
    )
    want = epoch_order(idx, faces.ages[idx], 2, 0, 1.0)
    got = np.concatenate([batches[i][1] for i in range(len(batches))])
    np.testing.assert_array_equal(got, faces.ages[want].astype(np.float32))


def test_a_run_without_checkpoints_writes_none(tmp_path):
    cfg, faces, fold, digest = _setup(
        "optim.epochs=2", "max_steps_per_epoch=2", "data.synthetic_persons=16"
    )
    ends = []
    metrics = train.fit(
        cfg, faces, fold, digest, tmp_path, progress=False, checkpoints=False,
        on_epoch_end=ends.append,
    )  # fmt: skip
    assert ends == [0, 1]  # the hook the throughput benchmark times the bare model in
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & {"backup", train.BEST_WEIGHTS, train.MODEL_FILE, "best.json"}, left
    assert metrics["best_epoch"] in (0, 1) and np.isfinite(metrics["test_mae"])
    assert metrics["epochs_run"] == 2  # the log is kept


def test_vote_stds_become_the_targets_widths(tmp_path):
    cfg, faces, fold, digest = _setup(
        "optim.epochs=1", "max_steps_per_epoch=2", "loss.vote_sigma=true", "loss.label_sigma=1.5"
    )
    faces.age_stds = np.where(np.arange(len(faces)) % 2 == 0, 3.0, np.nan).astype(np.float32)
    metrics = train.fit(cfg, faces, fold, digest, tmp_path, progress=False)
    assert np.isfinite(metrics["test_mae"])
