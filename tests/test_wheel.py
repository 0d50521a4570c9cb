"""The project installed as a wheel (not editable) works from an unrelated folder: the command,
its presets (package data) and a quick synthetic training run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["agezoo", "common", "tf_impl", "torch_impl", "weights", "benchmarks"]
FILES = ["setup.cfg", "pyproject.toml", "README.md"]


def _run(args, cwd, env, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of the sources, installed into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        shutil.copy(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), "."], src, env
    )
    (wheel,) = (tmp / "dist").glob("agezoo-*.whl")
    site = tmp / "site"
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], tmp, env)
    work = tmp / "elsewhere"
    work.mkdir()
    # The wheel's folder first: the editable install of the checkout must not be what runs.
    env = {**env, "PYTHONPATH": str(site), "AGEZOO_CACHE": str(tmp / "cache")}
    return site, work, env


@pytest.mark.slow
def test_wheel_installs_the_packages_and_their_presets(installed):
    site, work, env = installed
    code = (
        "import json, agezoo.cli, common, common.config as c, torch_impl, tf_impl, weights\n"
        "released = [str(weights.RELEASED_DIR / card['weights_file'])\n"
        "            for card in weights.released_cards().values()]\n"
        "print(json.dumps({'common': common.__file__, 'presets': c.training_presets(),\n"
        "                  'configs': str(c.CONFIG_DIR), 'released': released}))\n"
    )
    out = json.loads(_run([sys.executable, "-c", code], work, env).stdout.splitlines()[-1])
    assert out["common"].startswith(str(site)), "the checkout ran, not the wheel"
    assert out["configs"].startswith(str(site))
    assert {"default", "quick", "general", "pretrain-aaf"} <= set(out["presets"])
    bench = [p.name for p in (Path(out["configs"])).glob("bench-*.yaml")]
    assert "bench-smoke.yaml" in bench
    assert not (site / "benchmarks").exists(), "benchmarks/ runs from the checkout only"
    help_text = _run([str(site / "bin" / "agezoo"), "predict", "--help"], work, env).stdout
    assert "--model" in help_text and "--onnx" in help_text
    assert out["released"], "the wheel carries no released model"
    for path in out["released"]:
        assert path.startswith(str(site)) and Path(path).is_file()


@pytest.mark.slow
def test_the_installed_wheel_predicts_with_its_released_model(installed):
    """Right after install: no model named, no data, an empty cache, the default model."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    from common.synthetic import make_synthetic

    site, work, env = installed
    Image.fromarray(make_synthetic(1, 1, size=112, seed=2).images[0]).save(work / "face.png")
    env = {k: v for k, v in env.items() if k not in ("AGEZOO_WEIGHTS_DIR", "AGEZOO_AAF_DIR")}
    args = [str(site / "bin" / "agezoo"), "predict", "face.png", "--fallback-center", "--json"]
    result = json.loads(_run(args, work, env).stdout)
    model = result["model"]  # one released ONNX file, or the released ensemble of several
    assert model["framework"] in ("onnx", "ensemble")
    sources = model["source"].split(" + ")
    assert len(sources) == model["members"]
    assert all(source.startswith(str(site)) and source.endswith(".onnx") for source in sources)
    (face,) = result["faces"]
    assert np.isfinite(face["age"]) and face["std"] > 0


@pytest.mark.slow
def test_wheel_trains_a_quick_synthetic_model_from_another_folder(installed):
    site, work, env = installed
    pytest.importorskip("torch")
    run = work / "run"
    args = [sys.executable, "-m", "torch_impl.train", "quick", "data.dataset=synthetic"]
    args += ["data.size=32", "optim.epochs=1", "max_steps_per_epoch=2", f"run_dir={run}"]
    _run(args, work, env)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["synthetic"] and metrics["epochs_run"] == 1
