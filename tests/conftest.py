import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Tests never write to the user's cache; one cache folder is shared by the session."""
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path_factory.getbasetemp() / "agezoo-cache"))


@pytest.fixture(scope="session")
def fgnet_dir() -> Path:
    """The real FG-NET copy, or a skip that says how to provide it."""
    root = os.environ.get("AGEZOO_FGNET_DIR")
    reason = None
    if not root:
        reason = "AGEZOO_FGNET_DIR is not set: real FG-NET tests need a local copy"
    elif not (Path(root) / "images").is_dir():
        reason = f"AGEZOO_FGNET_DIR={root} has no images/ folder"
    if reason and os.environ.get("AGEZOO_REQUIRE_FGNET") == "1":
        pytest.fail(f"AGEZOO_REQUIRE_FGNET=1 but {reason}")
    if reason:
        pytest.skip(reason)
    return Path(root)


def varied_age_model(size: int, seed: int = 0, sharp: float = 20.0):
    """A PyTorch MobileNetV2 age model whose ages differ between faces: ImageNet weights when
    at hand, else BatchNorm statistics of synthetic faces (a fresh network maps every face to
    the same features), and the head scaled up."""
    import torch

    import weights as weight_registry
    from common.synthetic import make_synthetic
    from torch_impl.models import create_model
    from torch_impl.preprocess import to_input

    torch.manual_seed(seed)
    weights = "imagenet" if weight_registry.find_local("mobilenet_v2-b0353104.pth") else "none"
    model = create_model("mobilenet_v2", 101, weights, size)
    with torch.no_grad():
        if weights == "none":
            faces = torch.from_numpy(make_synthetic(16, 2, size=size, seed=1).images)
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None  # a plain average over the calibration pass
            model.train()(to_input(faces, model.entry.mean, model.entry.std, size))
        model.head.weight.mul_(sharp)
    return model.eval()


TINY_KERAS = "tiny_cnn"


def tiny_keras_entry():
    """A three-convolution Keras backbone for the tests of the training loop's mechanics
    (resume, run folders, losses, CLI), where MobileNetV2's one-minute graph tracing per fit
    tests nothing more. Tests put it into ``tf_impl.models.REGISTRY`` under :data:`TINY_KERAS`
    for their own duration only (``monkeypatch.setitem``), so the registry's real names stay
    what other tests see."""
    import keras
    from keras import layers

    import weights as weight_registry
    from tf_impl import models

    def build(size: int, _weights) -> keras.Model:
        inputs = keras.Input((size, size, 3))
        x = inputs
        for width in (16, 32, 64):
            x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return keras.Model(inputs, layers.GlobalAveragePooling2D()(x), name="tiny_cnn")

    return models.ModelEntry(
        TINY_KERAS,
        build,
        64,
        16,
        weight_registry.IMAGENET_MEAN,
        weight_registry.IMAGENET_STD,
        keras_imagenet=False,
    )


def assert_time_counts_every_epoch(run_dir, metrics):
    """A resumed run's training time counts the epochs of the process before it too."""
    from common.results import CsvLog

    rows = CsvLog(run_dir / "log.csv", keep=True).rows
    elapsed = [float(r["elapsed_seconds"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    assert metrics["train_seconds"] >= sum(float(r["train_seconds"]) for r in rows)
    assert metrics["train_seconds"] >= elapsed[-1]
