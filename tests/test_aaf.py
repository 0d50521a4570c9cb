import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import datasets, prepare
from common.cache import cached_faces
from common.config import DataConfig, ProtocolConfig
from common.datasets import DatasetNotFoundError, DataWarning
from common.faces import AlignSpec, implausible_eyes
from common.synthetic import make_synthetic

W, H = 80, 96


def _points(left=(28.0, 40.0), right=(52.0, 40.0)) -> np.ndarray:
    """49 AAF-style points with rows 19-24 around ``left`` and 25-30 around ``right``."""
    pts = np.tile([[W / 2, H * 0.7]], (49, 1))
    ring = np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]], float)
    pts[19:25] = np.array(left) + ring
    pts[25:31] = np.array(right) + ring
    return pts


@pytest.fixture
def fake_aaf(tmp_path) -> Path:
    """The download's layout, with its known defects in small."""
    root = tmp_path / "All-Age-Faces Dataset"
    faces = make_synthetic(8, 1, size=W, seed=1).images
    images, points = root / "aglined faces", root / "key points"
    images.mkdir(parents=True)
    points.mkdir()

    def add(name: str, face: int, pts=None):
        Image.fromarray(faces[face]).resize((W, H)).save(images / name, quality=90)
        if pts is not None:
            np.savetxt(points / f"{Path(name).stem}.txt", pts, fmt="%.3f")

    add("00000A02.jpg", 0, _points())
    add("00001A35.jpg", 1, _points())
    add("00002A61.jpg", 2, _points())
    add("00003A20.jpg", 3, _points())  # duplicate pair, ages disagree: both dropped
    (images / "00004A45.jpg").write_bytes((images / "00003A20.jpg").read_bytes())
    add("00005A30.jpg", 4, _points())  # duplicate pair, same age: one copy kept
    (images / "00006A30.jpg").write_bytes((images / "00005A30.jpg").read_bytes())
    add("00007A50.jpg", 5, _points(left=(5.0, 90.0), right=(75.0, 10.0)))  # implausible eyes
    add("00008A12.jpg", 6)
    (points / "00008A12.txt").write_text("1 2\n3 4\n")  # a bad landmark file
    add("0009A1.jpg", 7)  # not an AAF name
    sets = root / "image sets"
    sets.mkdir()
    (sets / "train.txt").write_text(
        "00000A02.jpg 0\n00001A35.jpg 1\n00003A20.jpg 0\n00005A30.jpg 0\n00007A50.jpg 0\n"
        "00008A12.jpg 0\n"
    )
    (sets / "val.txt").write_text(
        "00002A61.jpg 1\n00004A45.jpg 1\n00006A30.jpg 0\nnot-an-image 0\n"
    )
    return root


def test_reader_layout_landmarks_and_duplicates(fake_aaf):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        records = datasets.load_aaf(fake_aaf)
    messages = [str(w.message) for w in caught]
    assert any("0009A1.jpg" in m for m in messages)
    assert any("00008A12" in m and "expected 49 points" in m for m in messages)
    assert any("val.txt line 4" in m for m in messages)
    summary = next(m for m in messages if "byte-identical" in m)
    assert "2 groups" in summary and "1 disagree" in summary and "25 years" in summary
    assert "2 straddle" in summary
    by_name = {r.path.name: r for r in records}
    assert set(by_name) == {
        "00000A02.jpg",
        "00001A35.jpg",
        "00002A61.jpg",
        "00005A30.jpg",
        "00007A50.jpg",
        "00008A12.jpg",
    }
    assert by_name["00001A35.jpg"].age == 35 and by_name["00001A35.jpg"].person == "00001A35"
    assert by_name["00000A02.jpg"].landmarks.shape == (49, 2)
    assert by_name["00008A12.jpg"].landmarks is None


def test_duplicate_report_counts(fake_aaf):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        records = datasets.load_aaf(fake_aaf, dedupe=False)
        split = datasets.aaf_split(fake_aaf)
    official = {n: part for part, names in split.items() for n in names}
    kept, report = datasets.find_duplicates(records, official)
    assert (report.groups, report.files, report.conflicting_groups) == (2, 4, 1)
    assert (report.dropped_files, report.straddling_groups, report.max_age_gap) == (3, 2, 25)
    assert len(kept) == len(records) - 3


def test_alignment_rejects_implausible_landmarks_and_counts_them(fake_aaf, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        records = datasets.load_aaf(fake_aaf)
    arrays = cached_faces(
        records, AlignSpec(size=32, detector="haar"), "aaf", cache_dir=tmp_path, progress=False
    )
    rejected = arrays.meta["landmarks_rejected"]
    assert [r["file"] for r in rejected] == ["00007A50.jpg"]
    assert "tilted" in rejected[0]["reason"] or "apart" in rejected[0]["reason"]
    counts = arrays.meta["method_counts"]
    assert counts["landmarks"] == 4 and sum(counts.values()) == len(records)


def test_implausible_eyes_rules():
    shape = (100, 100, 3)
    assert implausible_eyes(np.array([[30.0, 40], [70, 40]]), shape) is None
    assert "outside" in implausible_eyes(np.array([[-3.0, 40], [70, 40]]), shape)
    assert "apart" in implausible_eyes(np.array([[49.0, 40], [51, 40]]), shape)
    assert "tilted" in implausible_eyes(np.array([[40.0, 20], [50, 70]]), shape)


def test_official_split_and_root(fake_aaf, monkeypatch):
    monkeypatch.delenv("AGEZOO_AAF_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError, match="AGEZOO_AAF_DIR"):
        datasets.aaf_root()
    monkeypatch.setenv("AGEZOO_AAF_DIR", str(fake_aaf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        records = prepare.load_records(DataConfig(dataset="aaf"))
        persons = np.array([r.person for r in records])
        folds = prepare.build_folds(
            ProtocolConfig(kind="official", val_fraction=0.25), persons, DataConfig(dataset="aaf")
        )
    (fold,) = folds
    assert fold.test == ("00002A61",)  # the duplicates were removed from val.txt's people
    assert len(fold.val) == 1 and len(fold.train) == 4
    with pytest.raises(ValueError, match=r"official exists for data\.dataset=aaf\|appa only"):
        prepare.build_folds(ProtocolConfig(kind="official"), persons, DataConfig())


def test_combined_sets_hold_out_each_parts_official_test_people(fake_aaf, monkeypatch):
    """aaf+fgnet: AAF's val.txt people are the test set; FG-NET, with no list, never tests."""
    monkeypatch.setenv("AGEZOO_AAF_DIR", str(fake_aaf))
    data = DataConfig(dataset="aaf+fgnet")
    persons = np.array(
        ["aaf:00000A02", "aaf:00001A35", "aaf:00002A61", "aaf:00005A30"]
        + [f"fgnet:{i:03d}" for i in range(1, 9)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        test = prepare.official_test_people(data)
        assert "aaf:00002A61" in test and all(p.startswith("aaf:") for p in test)
        (fold,) = prepare.build_folds(
            ProtocolConfig(kind="official", val_fraction=0.25), persons, data
        )
    assert fold.test == ("aaf:00002A61",)
    assert set(fold.train) | set(fold.val) == set(persons) - {"aaf:00002A61"}
    with pytest.raises(ValueError, match="official exists"):
        prepare.official_test_people(DataConfig(dataset="fgnet+utkface"))


def test_landmarks_false_aligns_every_image_by_the_detector(fake_aaf, monkeypatch):
    """The crops agezoo predict sees: landmarks ignored, a cache entry of their own."""
    monkeypatch.setenv("AGEZOO_AAF_DIR", str(fake_aaf))
    data = DataConfig(dataset="aaf", size=32, detector="haar")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        marked = prepare.load_faces(data, progress=False)
        detected = prepare.load_faces(replace(data, landmarks=False), progress=False)
    assert "landmarks" in set(marked.methods)
    assert "landmarks" not in set(detected.methods) and len(detected) == len(marked)
    assert detected.key != marked.key


@pytest.mark.skipif(not os.environ.get("AGEZOO_AAF_DIR"), reason="AGEZOO_AAF_DIR is not set")
def test_real_aaf_duplicates():
    root = Path(os.environ["AGEZOO_AAF_DIR"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        records = datasets.load_aaf(root, dedupe=False)
        split = datasets.aaf_split(root)
    assert len(records) == 13322
    official = {n: part for part, names in split.items() for n in names}
    kept, report = datasets.find_duplicates(records, official)
    assert (report.groups, report.files, report.conflicting_groups) == (186, 382, 161)
    assert (report.straddling_groups, report.max_age_gap) == (95, 32)
    assert len(kept) == 13322 - report.dropped_files == 12965


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_pretrain_publishes_weights_that_aaf_loads(framework, fake_aaf, tmp_path, monkeypatch):
    pytest.importorskip("torch" if framework == "torch" else "keras")
    import json

    import weights
    from agezoo import pretrain

    monkeypatch.setenv("AGEZOO_AAF_DIR", str(fake_aaf))
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    if framework == "torch":
        from torch_impl.models import create_model

        arch = "mobilenet_v2"
    else:
        from conftest import TINY_KERAS, tiny_keras_entry

        from tf_impl import models
        from tf_impl.models import create_model

        arch = TINY_KERAS  # the publish path, not MobileNetV2's tracing time
        monkeypatch.setitem(models.REGISTRY, arch, tiny_keras_entry())
    with pytest.raises(weights.WeightsUnavailableError, match="make pretrain FRAMEWORK="):
        create_model(arch, 101, "aaf", 32)
    run = tmp_path / "run"
    args = ["data.size=32", "optim.epochs=1", "model.weights=none", "data.detector=haar"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        code = pretrain.main(
            ["--framework", framework, "--model", arch, "--run-dir", str(run), *args]
            + ["tensorboard=false"]
        )
    assert code == 0
    (card_file,) = weights.trained_weights_dir().glob(f"aaf-{framework}-{arch}-*.card.json")
    card = json.loads(card_file.read_text())
    assert card["people"] == {"train": 4, "val": 1, "test": 1}
    assert card_file.with_name(card_file.name.replace(".json", ".md")).is_file()
    assert np.isfinite(card["val_mae"]) and card["initialised_from"] == "scratch"

    model = create_model(arch, 101, "aaf", 32)
    assert model.pretrained
    if framework == "torch":
        import torch

        saved = torch.load(card_file.parent / card["weights_file"], weights_only=True)
        assert torch.equal(model.head.weight, saved["head.weight"])
        l2 = create_model(arch, 1, "aaf", 32)  # backbone from AAF, fresh 1-output head
        assert torch.equal(l2.backbone.features[0][0].weight, model.backbone.features[0][0].weight)
    else:
        from tf_impl.models import backbone_of

        reference = create_model(arch, 101, "none", 32)
        reference.load_weights(run / "best.weights.h5")
        for ours, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)
        l2 = create_model(arch, 1, "aaf", 32)
        for ours, theirs in zip(
            backbone_of(l2).get_weights(), backbone_of(model).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)
    with open(card_file.parent / card["weights_file"], "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ValueError, match="does not match"):
        create_model(arch, 101, "aaf", 32)


@pytest.mark.slow
@pytest.mark.fgnet
def test_make_model_writes_the_default_predict_model(fgnet_dir, fake_aaf, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import json

    import weights
    from agezoo import pretrain
    from agezoo.backends import load_predictor

    monkeypatch.setenv("AGEZOO_AAF_DIR", str(fake_aaf))
    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    tiny = ["data.size=32", "optim.epochs=1", "data.detector=haar", "tensorboard=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert pretrain.main(["--run-dir", str(tmp_path / "aaf"), "model.weights=none", *tiny]) == 0
        assert "torch/mobilenet_v2/general" not in weights.age_models()
        code = pretrain.main(
            [
                "--kind",
                "general",
                "--run-dir",
                str(tmp_path / "gen"),
                "max_steps_per_epoch=2",
                *tiny,
            ]
        )
    assert code == 0
    assert "torch/mobilenet_v2/general" in weights.age_models()
    (card_file,) = weights.trained_weights_dir().glob("general-torch-*.card.json")
    card = json.loads(card_file.read_text())
    assert "NEVER score it on FG-NET" in card["data"] and card["test_mae"] is None
    assert card["initialised_from"] == "AAF-pretrained weights"
    predictor = load_predictor("torch/mobilenet_v2/general")
    assert predictor.card.temperature == card["temperature"]
    out = predictor.estimate(make_synthetic(2, 1, size=32).images)
    assert np.isfinite(out["age"]).all() and (out["std"] > 0).all()


def test_design_card_models_pretrain_from_scratch_preset():
    from agezoo.pretrain import preset_for
    from common.config import load_config

    assert preset_for("aaf", "mobilenet_v2") == "pretrain-aaf"
    assert preset_for("general", "mobilenet_v2") == "general"
    for model in ("resnet34", "resnet50", "inception_v3"):
        cfg = load_config(preset_for("aaf", model), [f"model.name={model}"])
        assert cfg.model.weights == "none" and cfg.data.dataset == "aaf"
        assert cfg.protocol.kind == "official"


def test_each_kind_of_pretrained_weights_is_found_by_its_own_name(tmp_path, monkeypatch):
    import hashlib
    import json

    import weights

    monkeypatch.setenv("AGEZOO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(weights.WeightsUnavailableError, match="--kind aaf-appa"):
        weights.aaf_weights("torch", "mobilenet_v2", "aaf-appa")
    for kind in ("aaf", "aaf-appa"):
        data = kind.encode()
        sha = hashlib.sha256(data).hexdigest()
        stem = f"{kind}-torch-mobilenet_v2-112px-{sha[:8]}"
        (tmp_path / f"{stem}.pt").write_bytes(data)
        card = {"weights_file": f"{stem}.pt", "sha256": sha}
        (tmp_path / f"{stem}.card.json").write_text(json.dumps(card))
    for kind in ("aaf", "aaf-appa"):
        found = weights.aaf_weights("torch", "mobilenet_v2", kind)
        assert found.read_bytes() == kind.encode()
    with pytest.raises(ValueError, match="unknown pretrained weights"):
        weights.aaf_weights("torch", "mobilenet_v2", "imagenet")


def test_aaf_appa_pretraining_never_sees_fgnet():
    from agezoo.pretrain import preset_for
    from common.config import load_config

    cfg = load_config(preset_for("aaf-appa", "mobilenet_v2"))
    assert cfg.data.dataset == "aaf+appa" and "fgnet" not in cfg.data.dataset
    assert cfg.protocol.kind == "official" and not cfg.data.landmarks
