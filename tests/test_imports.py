import importlib.util
import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "torchvision", "tensorflow", "keras", "jax")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_common_imports_no_framework():
    modules = [
        "common." + m
        for m in (
            "datasets",
            "faces",
            "cache",
            "splits",
            "losses",
            "metrics",
            "synthetic",
            "config",
            "prepare",
            "contact_sheet",
            "env_check",
            "registry",
            "results",
            "runner",
        )
    ] + ["weights"]
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
