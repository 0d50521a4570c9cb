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
