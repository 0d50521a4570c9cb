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
