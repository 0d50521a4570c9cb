import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import weights as weight_registry
from agezoo.backends import load_predictor
from agezoo.cli import predict_main
from agezoo.output import as_csv, as_json
from common.config import Config, DataConfig, LossConfig, ModelConfig, save_config, to_dict
from common.datasets import load_fgnet
from common.faces import AlignSpec, align_face, eyes_from_landmarks
from common.predictor import FLIP, ModelCard, ModelNotFoundError, PredictResult, expand_inputs
from common.synthetic import make_synthetic

torch = pytest.importorskip("torch")

from conftest import varied_age_model  # noqa: E402

SIZE = 64
CALIBRATION = {"temperature": 1.7}


def _config(detector: str = "mtcnn") -> Config:
    return Config(
        data=DataConfig(size=SIZE, detector=detector),
        model=ModelConfig(name="mobilenet_v2", weights="none"),
        loss=LossConfig(name="mean_variance"),
    )


def _torch_model(seed: int = 0, sharp: float = 20.0):
    return varied_age_model(SIZE, seed, sharp)


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory) -> Path:
    """A run folder with an agezoo checkpoint, as torch_impl.train writes it."""
    run = tmp_path_factory.mktemp("torch-run")
    model = _torch_model()
    state = {
        "model": model.state_dict(),
        "config": to_dict(_config()),
        "calibration": CALIBRATION,
        "preprocess": "test",
    }
    torch.save(state, run / "best.pt")
    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Good FG-NET photos (when the copy is at hand) and three bad files."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(folder / "blank.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def _fgnet_photos(fgnet_dir: Path, folder: Path, n: int = 3) -> list[Path]:
    paths = []
    for rec in load_fgnet(fgnet_dir)[:: 1002 // n][:n]:
        dest = folder / rec.path.name
        dest.write_bytes(rec.path.read_bytes())
        paths.append(dest)
    return paths


@pytest.mark.fgnet
def test_cli_names_bad_files_predicts_the_rest(fgnet_dir, torch_run, photos, tmp_path, capsys):
    good = _fgnet_photos(fgnet_dir, photos)
    code = predict_main(
        [str(photos), str(photos / "notes.txt"), "--model", str(torch_run), "--json"]
        + ["--annotate", str(tmp_path / "ann")]
    )
    out, err = capsys.readouterr()
    assert code == 1  # some files failed
    for name, reason in [
        ("blank.png", "no face found"),
        ("corrupt.jpg", "cannot decode"),
        ("notes.txt", "cannot decode"),
    ]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    report = json.loads(out)
    assert set(report) == {"model", "interval", "flip", "faces", "failures"}
    assert report["flip"] is False  # off unless --flip
    assert report["model"]["temperature"] == CALIBRATION["temperature"]
    assert {Path(f["file"]).name for f in report["faces"]} == {p.name for p in good}
    for face in report["faces"]:
        assert set(face) == {"file", "face", "box", "age", "std", "low", "high", "method"} | {
            "frame",
            "time",
        }
        assert face["frame"] is None and face["time"] is None  # a photo, not a video
        assert face["low"] <= face["age"] <= face["high"] and face["std"] > 0
        assert len(face["box"]) == 4 and face["method"] == "mtcnn"
    assert {Path(f["file"]).name for f in report["failures"]} == {
        "blank.png",
        "corrupt.jpg",
        "notes.txt",
    }
    annotated = sorted((tmp_path / "ann").iterdir())
    assert [p.name.split(".")[0] for p in annotated] == sorted(p.stem for p in good)
    with Image.open(annotated[0]) as im:
        assert im.size == Image.open(photos / f"{annotated[0].name.split('.')[0]}.JPG").size


@pytest.mark.fgnet
def test_detected_faces_hold_the_landmark_eyes(fgnet_dir, torch_run):
    records = load_fgnet(fgnet_dir)[::200]
    predictor = load_predictor(torch_run)
    result = predictor.predict_paths([r.path for r in records], every_face=False)
    assert not result.failures and len(result.faces) == len(records)
    for rec, face in zip(records, result.faces, strict=True):
        x, y, w, h = face.box
        eyes = eyes_from_landmarks(rec.landmarks)
        assert ((eyes >= (x, y)) & (eyes <= (x + w, y + h))).all(), rec.path.name
    assert set(result.timings) == {"decode", "detect", "align", "infer"}


def test_fallback_center_and_csv(torch_run, tmp_path):
    face = make_synthetic(1, 1, size=96).images[0]
    Image.fromarray(face).save(tmp_path / "chip.png")
    predictor = load_predictor(torch_run)
    predictor.use_detector("haar")  # drawn faces are not for the face detectors
    missing = predictor.predict_paths([tmp_path / "chip.png"])
    assert missing.failures and "no face found" in missing.failures[0].reason
    result = predictor.predict_paths([tmp_path / "chip.png"], fallback_center=True)
    assert not result.failures and result.faces[0].method == "center"
    assert result.faces[0].box is None
    lines = as_csv(result).splitlines()
    assert lines[0] == "file,frame,time,face,x,y,w,h,age,std,low90,high90,method"
    assert lines[1].split(",")[1:3] == ["", ""]  # a photo: no frame, no time
    assert len(lines) == 2


def test_temperature_widens_the_reported_spread(torch_run):
    predictor = load_predictor(torch_run)
    # one pass: logits averaged over a face and its mirror can be two-peaked, and a higher
    # temperature may then narrow them (mass moves from both ends towards the middle)
    predictor.flip = False
    faces = make_synthetic(4, 2, size=SIZE).images
    calibrated = predictor.estimate(faces)
    predictor.card = ModelCard(**{**predictor.card.__dict__, "temperature": 1.0})
    raw = predictor.estimate(faces)
    np.testing.assert_allclose(calibrated["age"], raw["age"])
    assert (calibrated["std"] > raw["std"]).all()
    assert ((calibrated["high"] - calibrated["low"]) > (raw["high"] - raw["low"])).all()


def test_model_references_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(weight_registry, "default_age_model", lambda: None)
    with pytest.raises(ModelNotFoundError, match="--model"):
        load_predictor(None)
    with pytest.raises(ModelNotFoundError, match="neither best.pt nor model.keras"):
        load_predictor(tmp_path)
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="not a model file"):
        load_predictor(tmp_path / "model.txt")
    with pytest.raises(ModelNotFoundError, match="registered age model"):
        load_predictor("no/such/model")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.pt: not a readable PyTorch checkpoint"):
        load_predictor(tmp_path / "bad.pt")
    paths, failures = expand_inputs([tmp_path, tmp_path / "nothing.jpg"])
    assert paths == [] and failures[0].reason == "no such file or folder"


def test_registered_age_model_is_hash_checked(torch_run, tmp_path, monkeypatch):
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "age-test.pt").write_bytes((torch_run / "best.pt").read_bytes())
    sha = weight_registry.hashlib.sha256((tmp_path / "age-test.pt").read_bytes()).hexdigest()
    common = dict(
        framework="torch",
        arch="mobilenet_v2",
        input_size=SIZE,
        mean=weight_registry.IMAGENET_MEAN,
        std=weight_registry.IMAGENET_STD,
        data="test",
        licence="test",
        task="age",
    )
    good = weight_registry.WeightsEntry(name="test/good", url="age-test.pt", sha256=sha, **common)
    bad = weight_registry.WeightsEntry(
        name="test/bad", url="age-test.pt", sha256="0" * 64, **common
    )
    try:
        weight_registry.register(good)
        weight_registry.register(bad)
        assert {"test/good", "test/bad"} <= set(weight_registry.age_models())
        assert load_predictor("test/good").card.temperature == CALIBRATION["temperature"]
        with pytest.raises(ValueError, match="does not match"):
            load_predictor("test/bad")
    finally:
        weight_registry.ENTRIES.pop("test/good", None)
        weight_registry.ENTRIES.pop("test/bad", None)


@pytest.mark.slow
def test_onnx_export_parity_and_its_path_imports_no_framework(torch_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from torch_impl.export import export_onnx

    report = export_onnx(torch_run, tmp_path / "age.onnx")
    assert report["logit_gap"] <= 1e-4
    faces = make_synthetic(6, 1, size=SIZE, seed=3).images
    ages_torch = load_predictor(torch_run).estimate(faces)
    ages_onnx = load_predictor(tmp_path / "age.onnx").estimate(faces)
    for key in ("age", "std", "low", "high"):  # years: float32 rounding only
        np.testing.assert_allclose(ages_onnx[key], ages_torch[key], atol=0.01)
    Image.fromarray(faces[0]).resize((128, 128)).save(tmp_path / "chip.png")
    code = (
        "import sys\n"
        "from agezoo.cli import predict_main\n"
        f"rc = predict_main([{str(tmp_path / 'chip.png')!r}, '--onnx', "
        f"{str(tmp_path / 'age.onnx')!r}, '--fallback-center', '--json'])\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'jax', 'mtcnn')\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORTED []" in result.stdout
    assert '"framework": "onnx"' in result.stdout


@pytest.mark.slow
def test_keras_export_and_frameworks_agree_on_ages(torch_run, tmp_path):
    """Same weights (torch MobileNetV2 ported to Keras), same crops → same ages within 0.01."""
    keras = pytest.importorskip("keras")
    from tf_impl.convert import port_torch_age_model
    from tf_impl.export import export_keras
    from tf_impl.models import create_model

    kmodel = create_model("mobilenet_v2", 101, "none", SIZE)
    port_torch_age_model(_torch_model().state_dict(), "mobilenet_v2", kmodel)
    run = tmp_path / "keras-run"
    run.mkdir()
    kmodel.save(run / "model.keras")
    save_config(_config(), run / "config.yaml")
    (run / "calibration.json").write_text(json.dumps(CALIBRATION))

    report = export_keras(run)
    assert report["keras_logit_gap"] <= 1e-4
    if keras.config.backend() == "tensorflow":
        assert report["saved_model_logit_gap"] <= 1e-4

    rng = np.random.default_rng(0)
    photo = (rng.uniform(0, 255, (160, 120, 3))).astype(np.uint8)
    faces = np.stack(
        [align_face(photo, AlignSpec(SIZE, detector="haar")).image]
        + list(make_synthetic(7, 1, size=SIZE, seed=5).images)
    )
    torch_ages = load_predictor(torch_run).estimate(faces)["age"]
    keras_ages = load_predictor(run / "export" / "age_model.keras").estimate(faces)["age"]
    assert np.ptp(torch_ages) > 1.0  # the check means something: ages differ between faces
    np.testing.assert_allclose(keras_ages, torch_ages, atol=0.01)


COMMANDS = [
    "common.prepare",
    "agezoo.cli",
    "agezoo.pretrain",
    "common.env_check",
    "torch_impl.train",
    "torch_impl.export",
    "tf_impl.train",
    "tf_impl.export",
    "benchmarks.run",
    "benchmarks.report",
    "benchmarks.throughput",
    "benchmarks.preprocess",
    "benchmarks.eye_geometry",
    "benchmarks.predict_speed",
    "benchmarks.predict_stages",
]


def test_every_command_answers_help():
    for start in range(0, len(COMMANDS), 4):  # four at a time: each imports its framework
        procs = {
            m: subprocess.Popen(
                [sys.executable, "-m", m, "--help"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for m in COMMANDS[start : start + 4]
        }
        for module, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (module, err[-1000:])
            assert "usage" in out.lower(), (module, out[:500])
    assert (Path(sys.executable).parent / "agezoo").is_file()  # the console script


def test_forward_leaves_the_callers_array_alone(torch_run):
    predictor = load_predictor(torch_run)
    faces = make_synthetic(2, 2, size=SIZE).images.astype(np.float32)
    before = faces.copy()
    predictor.forward(faces)
    np.testing.assert_array_equal(faces, before)


def test_cli_flip_turns_the_test_time_flip_on(fgnet_dir, torch_run, photos, capsys):
    good = _fgnet_photos(fgnet_dir, photos)
    assert predict_main([str(good[0]), "--model", str(torch_run), "--json", "--flip"]) == 0
    assert json.loads(capsys.readouterr().out)["flip"] is True


def test_flip_averages_each_face_with_its_mirror(torch_run):
    predictor = load_predictor(torch_run)
    assert predictor.flip is FLIP is False  # off by default
    predictor.flip = False
    faces = make_synthetic(3, 2, size=SIZE).images
    plain = predictor.outputs(faces)
    mirrored = predictor.outputs(np.ascontiguousarray(faces[:, :, ::-1]))
    assert np.abs(plain - mirrored).max() > 1e-3  # the drawn faces are not symmetric
    predictor.flip = True
    np.testing.assert_allclose(predictor.outputs(faces), (plain + mirrored) / 2, atol=1e-5)
    symmetric = np.concatenate([faces[:, :, : SIZE // 2], faces[:, :, : SIZE // 2][:, :, ::-1]], 2)
    predictor.flip = False
    alone = predictor.outputs(symmetric)
    predictor.flip = True
    np.testing.assert_allclose(predictor.outputs(symmetric), alone, atol=1e-5)
    report = json.loads(as_json(PredictResult(), predictor.card, predictor.flip))
    assert report["flip"] is True


def test_flip_benchmark_on_a_run_folder(torch_run, tmp_path):
    from benchmarks import flip
    from common.prepare import build_folds, load_faces
    from common.splits import save_folds

    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes((torch_run / "best.pt").read_bytes())
    cfg = _config()
    cfg = Config(**{**cfg.__dict__, "data": DataConfig(dataset="synthetic", size=SIZE)})
    save_config(cfg, run / "config.yaml")
    faces = load_faces(cfg.data, progress=False)
    save_folds(build_folds(cfg.protocol, faces.persons, cfg.data), run / "folds.json")
    assert flip.main([str(run), "--out", str(tmp_path / "flip.json")]) == 0
    row = json.loads((tmp_path / "flip.json").read_text())["runs"][0]
    for part in ("val", "test"):
        assert row[part]["images"] > 0
        plain, flipped = row[part]["plain"], row[part]["flip"]
        assert row[part]["mae_change"] == pytest.approx(flipped["mae"] - plain["mae"])
        assert 0 <= flipped["within_1std"] <= 1 and plain["mae"] > 0
    assert row["temperature"] == CALIBRATION["temperature"] and row["refit"]["temperature"] > 0
    assert flip.main([str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.json")]) == 1


def test_json_output_is_strict_json_for_an_l2_model():
    """An L2 model has no std or interval: they are null, never the NaN JSON does not have."""
    from common.predictor import FaceAge

    card = ModelCard("torch", "mobilenet_v2", "l2", 1, SIZE, 0.2, "haar")
    nan = float("nan")
    result = PredictResult(faces=[FaceAge("a.jpg", 0, (1, 2, 3, 4), 30.5, nan, nan, nan, "haar")])

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    face = json.loads(as_json(result, card, flip=True), parse_constant=refuse)["faces"][0]
    assert face["age"] == 30.5 and face["std"] is None and face["low"] is None
    assert face["box"] == [1, 2, 3, 4]


def test_stage_benchmark_times_every_stage_of_the_default_path(fgnet_dir):
    from benchmarks.predict_stages import stages

    paths = [r.path for r in load_fgnet(fgnet_dir)[::200][:5]]
    predictor = load_predictor(None)  # the released default: BlazeFace, ONNX Runtime
    out = stages(paths, predictor, repeats=1)
    assert out["photos"] == 5 and out["faces_aligned"] == 5
    names = {"decode", "blazeface_model", "blazeface_decode_nms", "five_points", "align"}
    assert set(out["stages_ms_per_photo"]) == names | {"age_model_flip"}
    for figures in out["stages_ms_per_photo"].values():
        assert figures["1_thread"] > 0 and figures["2_threads"] > 0
    assert set(out["predict_photos_per_s"]) == {"1_worker", "2_workers", "2_workers_no_flip"}
    assert predictor.flip is FLIP  # left as it was
