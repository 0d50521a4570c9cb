import urllib.error

import pytest

torch = pytest.importorskip("torch")

import weights as weight_registry  # noqa: E402
from torch_impl import models  # noqa: E402
from torch_impl.models import create_model, list_models  # noqa: E402

TINY = {"inception_v3": 75}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("outputs", [101, 1])
def test_forward_shape_finite_and_every_parameter_learns(name, outputs):
    torch.manual_seed(0)
    size = TINY.get(name, 64)
    model = create_model(name, outputs, weights="none", input_size=size).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, outputs) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_inception_auxiliary_head_at_full_size():
    model = create_model("inception_v3", 7, weights="none", input_size=299).train()
    main, aux = model(torch.randn(2, 3, 299, 299))
    assert main.shape == aux.shape == (2, 7)
    model.eval()
    assert model(torch.randn(1, 3, 299, 299)).shape == (1, 7)


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        models.register(models.REGISTRY["resnet50"])
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        create_model("vgg")
    with pytest.raises(ValueError, match="at least 75 px"):
        create_model("inception_v3", weights="none", input_size=64)


def test_same_names_as_the_design_card():
    assert {"resnet34", "resnet50", "inception_v3", "mobilenet_v2"} <= set(list_models())


def test_local_weights_file_with_hash_in_name(tmp_path):
    src = create_model("resnet34", 5, weights="none")
    state = {"model": src.state_dict()}
    plain = tmp_path / "run.pt"
    torch.save(state, plain)
    loaded = create_model("resnet34", 5, weights=str(plain))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(src.eval()(x), loaded.eval()(x)) and loaded.pretrained
    wrong = tmp_path / "resnet34-deadbeef.pth"
    torch.save(state, wrong)
    with pytest.raises(ValueError, match="does not match"):
        create_model("resnet34", 5, weights=str(wrong))
    with pytest.raises(FileNotFoundError, match="not found"):
        create_model("resnet34", 5, weights=str(tmp_path / "nope.pth"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path))

    def no_network(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


def test_offline_imagenet_says_which_file_to_put_where(offline, tmp_path):
    with pytest.raises(weight_registry.WeightsUnavailableError) as info:
        create_model("resnet50", weights="imagenet")
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth" in message and str(tmp_path / "weights") in message


def test_auto_weights_offline_trains_from_scratch_with_a_warning(offline):
    with pytest.warns(UserWarning, match="FROM SCRATCH"):
        model = create_model("resnet34", weights="auto")
    assert model.pretrained is False


def test_torchvision_mobilenet_v2_file_loads_all_keys():
    path = weight_registry.find_local("mobilenet_v2-b0353104.pth")
    if path is None:
        pytest.skip("mobilenet_v2-b0353104.pth not found (set AGEZOO_WEIGHTS_DIR)")
    model = create_model("mobilenet_v2", 101, weights="imagenet")
    assert model.pretrained
    import torchvision

    ref = torchvision.models.mobilenet_v2()
    result = ref.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ref.classifier = torch.nn.Identity()
    x = torch.randn(2, 3, 96, 96)
    assert torch.allclose(ref.eval()(x), model.eval().backbone(x), atol=1e-6)
