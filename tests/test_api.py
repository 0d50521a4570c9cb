"""The Python API, video files and what a folder holds that cannot be read."""

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

import agezoo
from agezoo.cli import predict_main
from common.config import Config, DataConfig, LossConfig, ModelConfig, to_dict
from common.inputs import expand_inputs
from common.synthetic import make_synthetic

torch = pytest.importorskip("torch")

from conftest import varied_age_model  # noqa: E402

SIZE = 48


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A PyTorch run folder whose model gives different ages to different faces."""
    folder = tmp_path_factory.mktemp("run")
    model = varied_age_model(SIZE)
    cfg = Config(
        data=DataConfig(size=SIZE, detector="haar"),
        model=ModelConfig(name="mobilenet_v2", weights="none"),
        loss=LossConfig(name="mean_variance"),
    )
    state = {"model": model.state_dict(), "config": to_dict(cfg), "calibration": None}
    torch.save(state, folder / "best.pt")
    return folder


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    """Three synthetic face chips as files, and the same pixels in memory."""
    folder = tmp_path_factory.mktemp("chips")
    images = make_synthetic(3, 1, size=96, seed=7).images
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"chip{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths, images


def test_api_on_paths_arrays_and_pil_images_matches_the_cli(run, chips, capsys):
    paths, images = chips
    estimator = agezoo.AgeEstimator(run, fallback_center=True)
    by_path = estimator([str(p) for p in paths])
    by_array = estimator(list(images))
    by_pil = estimator([Image.fromarray(im) for im in images])
    assert predict_main([*map(str, paths), "--model", str(run), "--fallback-center", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["faces"]
    assert len(by_path) == len(by_array) == len(by_pil) == len(cli) == 3
    ages = [f["age"] for f in cli]
    assert np.ptp(ages) > 0.1  # the comparison means something: the faces get different ages
    for records in (by_path, by_array, by_pil):
        np.testing.assert_allclose([f["age"] for f in records], ages, atol=1e-6)
        assert set(records[0]) == set(cli[0])
    assert by_array[1]["file"] == "<array 1>" and by_path[1]["file"] == str(paths[1])
    alone = agezoo.predict(images[0], model=run, fallback_center=True)  # a batch of one
    assert alone[0]["age"] == pytest.approx(ages[0], abs=1e-3)  # float32 sums of another order


def test_api_names_what_it_cannot_use(run):
    estimator = agezoo.AgeEstimator(run)
    assert estimator([np.zeros((4, 4), np.float32), "missing.jpg", 3]) == []
    reasons = {f.file: f.reason for f in estimator.failures}
    assert "expected an (H, W, 3) uint8 RGB array" in reasons["<array 0>"]
    assert "cannot decode" in reasons["missing.jpg"]
    assert "not a path, an RGB array or a PIL image" in reasons["<input 2>"]


def test_dangling_symlink_and_unreadable_file_in_a_folder_are_named(tmp_path, capsys, run):
    Image.fromarray(make_synthetic(1, 1, size=96).images[0]).save(tmp_path / "ok.png")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    locked = tmp_path / "locked.png"
    locked.write_bytes((tmp_path / "ok.png").read_bytes())
    locked.chmod(0)
    paths, failures = expand_inputs([tmp_path])
    reasons = {os.path.basename(f.file): f.reason for f in failures}
    assert paths == sorted([tmp_path / "ok.png"] + ([locked] if os.access(locked, os.R_OK) else []))
    assert "dangling symbolic link" in reasons["gone.jpg"]
    if not os.access(locked, os.R_OK):  # root reads every file: then it is simply predicted
        assert reasons["locked.png"] == "permission denied"
    code = predict_main([str(tmp_path), "--model", str(run), "--fallback-center"])
    err = capsys.readouterr().err
    assert code == 1 and "gone.jpg: dangling symbolic link" in err


def _video(path, frames: int = 10, fps: float = 5.0):
    faces = make_synthetic(frames, 1, size=96, seed=3).images
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (96, 96))
    assert writer.isOpened()
    for face in faces:
        writer.write(cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_video_gives_rows_for_the_frames_asked_for(tmp_path, run, capsys):
    clip = _video(tmp_path / "clip.avi")
    args = [str(clip), "--model", str(run), "--fallback-center", "--every", "3"]
    assert predict_main([*args, "--json", "--annotate", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    faces = json.loads(out.out)["faces"]
    assert [f["frame"] for f in faces] == [0, 3, 6, 9]
    np.testing.assert_allclose([f["time"] for f in faces], [0.0, 0.6, 1.2, 1.8])
    (written,) = (tmp_path / "out").iterdir()
    capture = cv2.VideoCapture(str(written))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    capture.release()
    assert predict_main([*args, "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("file,frame,time,face") and rows[2].split(",")[1:3] == ["3", "0.600"]
    assert predict_main([*args]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["file", "frame", "time"] and len(table) == 5


def _second_run(tmp_path, size=SIZE, seed=1):
    folder = tmp_path / f"run-{size}-{seed}"
    folder.mkdir()
    cfg = Config(
        data=DataConfig(size=size, detector="haar"),
        model=ModelConfig(name="mobilenet_v2", weights="none"),
        loss=LossConfig(name="mean_variance"),
    )
    state = {
        "model": varied_age_model(size, seed=seed).state_dict(),
        "config": to_dict(cfg),
        "calibration": {"temperature": 1.5},
    }
    torch.save(state, folder / "best.pt")
    return folder


def test_ensemble_age_is_the_mean_of_its_members_expectations(run, tmp_path, capsys):
    from agezoo.backends import load_predictor
    from common.calibration import softmax

    other = _second_run(tmp_path)
    members = [load_predictor(run), load_predictor(other)]
    both = load_predictor([run, other])
    faces = make_synthetic(5, 1, size=SIZE, seed=11).images
    for p in (*members, both):
        p.flip = False
    ages = np.arange(101)
    mean_p = np.mean([softmax(m.outputs(faces).astype(np.float64)) for m in members], axis=0)
    got = both.estimate(faces)
    np.testing.assert_allclose(got["age"], mean_p @ ages, atol=1e-4)
    np.testing.assert_allclose(
        got["age"], np.mean([m.estimate(faces)["age"] for m in members], axis=0), atol=1e-4
    )
    assert both.card.members == 2 and both.card.temperature == pytest.approx(1.25)
    assert (got["low"] <= got["age"]).all() and (got["age"] <= got["high"]).all()

    Image.fromarray(faces[0]).resize((96, 96)).save(tmp_path / "face.png")
    args = [str(tmp_path / "face.png"), "--fallback-center", "--model", str(run)]
    assert predict_main([*args, "--model", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["members"] == 2
    assert predict_main([*args, "--model", str(other)]) == 0
    assert "the mean of 2 models" in capsys.readouterr().out


def test_ensemble_refuses_members_that_crop_differently(run, tmp_path):
    from agezoo.backends import load_predictor

    with pytest.raises(ValueError, match="must crop alike"):
        load_predictor([run, _second_run(tmp_path, size=32)])
