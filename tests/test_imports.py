import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("torch", "torchvision", "tensorflow", "keras", "jax")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _floor_modules() -> list[str]:
    """Every module of the framework-free floor (common/, weights/), found on disk."""
    root = Path(__file__).resolve().parent.parent
    names = []
    for pkg in ("common", "weights"):
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_common_imports_no_framework():
    modules = _floor_modules()
    assert "common.predictor" in modules and "common.datasets.fgnet" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(set(sys.modules) & set({FRAMEWORKS!r})))\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"common imported a framework: {result.stdout}"


@pytest.mark.parametrize(
    "order", [("tensorflow", "torchvision"), ("torchvision", "tensorflow"), ("keras", "torch")]
)
def test_framework_import_order_does_not_crash(order):
    for mod in order:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")
    code = "; ".join(f"import {m}" for m in order) + "; print('ok')"
    result = _run(code)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        f"importing {' then '.join(order)} failed with exit code {result.returncode} "
        f"(-11 is the triton segfault; run `pip uninstall triton`):\n{result.stderr[-2000:]}"
    )


def test_env_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "common.env_check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
