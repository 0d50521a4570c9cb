import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import weights as weight_registry  # noqa: E402
from tf_impl import models  # noqa: E402
from tf_impl.models import create_model, list_models  # noqa: E402

TINY = {"inception_v3": 75}


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_finite_and_gradients_reach_every_weight(name):
    keras.utils.set_random_seed(0)
    size = TINY.get(name, 64)
    model = create_model(name, 101, weights="none", input_size=size)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)), tf.float32)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(out**2)
    assert tuple(out.shape) == (2, 101) and np.isfinite(out.numpy()).all()
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads, strict=True) if g is None]
    assert not missing, f"weights without gradient: {missing[:5]}"


def test_resnet34_is_the_paper_architecture():
    backbone = models.resnet34_backbone(224)
    assert backbone.output_shape == (None, 512)
    # torchvision's resnet34 has 21,797,672 parameters, 513,000 of them in its fc layer.
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert trainable == 21_797_672 - 513_000
    assert sum(isinstance(layer, keras.layers.Add) for layer in backbone.layers) == 16


def test_data_size_resized_inside_the_model():
    model = create_model("resnet34", 1, weights="none", input_size=64, data_size=48)
    assert model.input_shape == (None, 48, 48, 3) and model.output_shape == (None, 1)


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        models.register(models.REGISTRY["resnet34"])
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg")
    with pytest.raises(ValueError, match="at least 75 px"):
        create_model("inception_v3", weights="none", input_size=64)


def test_same_names_as_pytorch():
    from torch_impl.models import list_models as torch_models

    assert set(list_models()) == set(torch_models())


def test_auto_without_weights_trains_from_scratch(monkeypatch, tmp_path):
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="FROM SCRATCH"):
        model = create_model("resnet34", 101, weights="auto", input_size=64)
    assert model.pretrained is False
    with pytest.raises(weight_registry.WeightsUnavailableError, match="mobilenet_v2-b0353104"):
        create_model("mobilenet_v2", 101, weights="imagenet", input_size=64)


def test_keras_save_load_round_trip(tmp_path):
    model = create_model("resnet34", 101, weights="none", input_size=48)
    x = np.random.default_rng(1).uniform(0, 255, (3, 48, 48, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = create_model("resnet34", weights=str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    model.save_weights(tmp_path / "m.weights.h5")
    third = create_model("resnet34", 101, weights=str(tmp_path / "m.weights.h5"), input_size=48)
    np.testing.assert_array_equal(model.predict(x, verbose=0), third.predict(x, verbose=0))


def test_mobilenet_v2_port_matches_pytorch():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    path = weight_registry.find_local("mobilenet_v2-b0353104.pth")
    if path is None:
        pytest.skip("mobilenet_v2-b0353104.pth not found (set AGEZOO_WEIGHTS_DIR)")
    from tf_impl.backbones import mobilenet_v2_torch_layout
    from tf_impl.convert import load_torchvision

    size = 112  # even: the size where Keras' own stride-2 padding would differ
    keras_net = mobilenet_v2_torch_layout(size)
    load_torchvision(keras_net, "mobilenet_v2")
    ref = torchvision.models.mobilenet_v2()
    ref.load_state_dict(torch.load(path, weights_only=True))
    ref.classifier = torch.nn.Identity()
    x = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype("float32")
    ours = keras_net.predict(x, verbose=0)
    theirs = ref.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    # The whole age model with preprocessing agrees too (same normalisation constants).
    model = create_model("mobilenet_v2", 101, weights="imagenet", input_size=size)
    assert model.pretrained
    images = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    from torch_impl.models import create_model as torch_create
    from torch_impl.preprocess import to_input

    tmodel = torch_create("mobilenet_v2", 101, weights="imagenet").eval()
    tx = to_input(
        torch.from_numpy(images.astype(np.uint8)), tmodel.entry.mean, tmodel.entry.std, size
    )
    feats_torch = tmodel.backbone(tx).detach().numpy()
    feats_keras = models.backbone_of(model).predict(
        model.get_layer("preprocess")(images.astype(np.uint8).astype("float32")), verbose=0
    )
    np.testing.assert_allclose(
        feats_keras, feats_torch, rtol=1e-4, atol=1e-4 * np.abs(feats_torch).max()
    )


def test_loss_and_model_run_on_the_torch_backend():
    pytest.importorskip("torch")
    code = (
        "import numpy as np, keras\n"
        "assert keras.config.backend() == 'torch'\n"
        "from tf_impl.losses import mean_variance_loss\n"
        "from tf_impl.models import create_model\n"
        "v = mean_variance_loss(np.zeros((2, 101), 'float32'), np.array([50.0, 50.0]))\n"
        "assert abs(float(v) - 47.1151) < 1e-3, float(v)\n"
        "m = create_model('resnet34', 101, weights='none', input_size=48)\n"
        "out = keras.ops.convert_to_numpy(m(np.zeros((2, 48, 48, 3), 'float32')))\n"
        "assert out.shape == (2, 101) and np.isfinite(out).all()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
