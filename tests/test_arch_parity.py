"""The design card's architectures are the same networks in both frameworks: parameter counts,
BatchNorm settings and, where a weight port exists, outputs on the same input."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from tf_impl import models as keras_models  # noqa: E402
from tf_impl.convert import PORTS, port_torch_age_model, torch_state_of  # noqa: E402
from torch_impl import models as torch_models  # noqa: E402

SIZE = {"inception_v3": 75}


def _count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in params)


def _pair(name, classes=101):
    size = SIZE.get(name, 64)
    torch.manual_seed(0)
    tmodel = torch_models.create_model(name, classes, "none", size).eval()
    kmodel = keras_models.create_model(name, classes, "none", size)
    return tmodel, kmodel, size


def _keras_bn(model):
    return [
        layer
        for layer in keras_models.backbone_of(model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "mobilenet_v2"])
def test_same_parameter_count(name):
    tmodel, kmodel, _ = _pair(name)
    assert _count(kmodel.weights) - _count(_keras_bn_stats(kmodel)) == _count(tmodel.parameters())


def _keras_bn_stats(model):
    return [w for layer in _keras_bn(model) for w in (layer.moving_mean, layer.moving_variance)]


def test_inception_v3_recorded_difference():
    """keras.applications' InceptionV3 has BatchNorm without a scale (γ): that, and nothing
    else, is what its parameter count lacks against torchvision's (without the aux head)."""
    tmodel, kmodel, _ = _pair("inception_v3")
    assert tmodel.backbone.AuxLogits is None  # dropped below 299 px
    gammas = sum(m.weight.numel() for m in tmodel.modules() if isinstance(m, torch.nn.BatchNorm2d))
    keras_trainable = _count(kmodel.weights) - _count(_keras_bn_stats(kmodel))
    assert keras_trainable == _count(tmodel.parameters()) - gammas
    assert not any(layer.scale for layer in _keras_bn(kmodel))


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "mobilenet_v2", "inception_v3"])
def test_batchnorm_momentum_and_epsilon_agree(name):
    tmodel, kmodel, _ = _pair(name)
    torch_bn = {
        (m.momentum, m.eps) for m in tmodel.modules() if isinstance(m, torch.nn.BatchNorm2d)
    }
    keras_bn = {(round(1 - layer.momentum, 6), layer.epsilon) for layer in _keras_bn(kmodel)}
    assert len(torch_bn) == 1 and keras_bn == torch_bn


@pytest.mark.parametrize("name", sorted(PORTS))
def test_ported_weights_give_the_same_ages(name):
    from torch_impl.preprocess import to_input

    tmodel, kmodel, size = _pair(name)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, size, size, 3)).astype(np.uint8)
    x = to_input(torch.from_numpy(images), tmodel.entry.mean, tmodel.entry.std, size)
    # BatchNorm statistics of real activations (a randomly initialised network's defaults
    # squash every image to the same output), so that the port must carry them.
    bns = [m for m in tmodel.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average
    with torch.no_grad():
        tmodel.train()(x)
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        theirs = tmodel.eval()(x).numpy()
    assert np.ptp(theirs, axis=0).max() > 1e-3 * np.abs(theirs).max()  # images differ
    port_torch_age_model(tmodel.state_dict(), tmodel.entry.name, kmodel)
    ours = kmodel.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("name", sorted(PORTS))
def test_keras_weights_port_back_to_torch_unchanged(name):
    """Keras → torch (a Keras run exported through PyTorch's ONNX path) is the exact inverse of
    torch → Keras: every tensor comes back bit for bit, and the torch model takes it strictly."""
    tmodel, kmodel, _ = _pair(name)
    with torch.no_grad():
        for p in tmodel.parameters():
            p.uniform_(-1, 1)
        for m in tmodel.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 1.5)
    port_torch_age_model(tmodel.state_dict(), name, kmodel)
    back = torch_state_of(kmodel, name)
    theirs = {k: v.numpy() for k, v in tmodel.state_dict().items()}
    assert sorted(back) == sorted(theirs)
    for key, value in theirs.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    fresh = torch_models.create_model(name, 101, "none", 64)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
