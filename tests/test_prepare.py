import json

import numpy as np
import pytest

from common import prepare
from common.config import DataConfig, ProtocolConfig


def test_prepare_synthetic_writes_folds_and_sheet(tmp_path, capsys):
    assert prepare.main(["--dataset", "synthetic", "--size", "32", "--out", str(tmp_path)]) == 0
    folds = json.loads((tmp_path / "folds_lopo.json").read_text())
    assert len(folds["folds"]) == 40
    assert (tmp_path / "contact_sheet.png").stat().st_size > 1000
    assert "contact sheet" in capsys.readouterr().out


def test_missing_fgnet_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGEZOO_FGNET_DIR", str(tmp_path / "nowhere"))
    assert prepare.main(["--out", str(tmp_path)]) == 1
    assert "no images/ folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind, n", [("lopo", 40), ("kfold", 5), ("holdout", 1)])
def test_build_folds(kind, n):
    data = prepare.load_faces(DataConfig(dataset="synthetic", size=32))
    folds = prepare.build_folds(ProtocolConfig(kind=kind), data.persons)
    assert len(folds) == n
    with pytest.raises(ValueError, match="unknown protocol"):
        prepare.build_folds(ProtocolConfig(kind="random"), data.persons)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data.dataset"):
        prepare.load_records(DataConfig(dataset="imdb", root="/x"))


@pytest.mark.fgnet
def test_make_data_on_real_fgnet(fgnet_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path / "cache"))
    assert prepare.main(["--size", "64", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "all images match the manifest" in out and "1002 aligned faces, 82 people" in out
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "folds_lopo.json").read_text())["folds"]) == 82
    sample = prepare.sheet_sample(prepare.load_faces(DataConfig(size=64), progress=False))
    assert len(np.unique(sample)) == 96
