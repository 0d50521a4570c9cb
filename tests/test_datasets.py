import os
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import datasets
from common.datasets import DatasetNotFoundError, DataWarning


def _jpg(path: Path, value: int = 128, size=(40, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _pts(path: Path, n: int = 68) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{i % 40}.5 {i % 48}.25" for i in range(n))
    path.write_text(f"version: 1\nn_points: {n}\n{{\n{body}\n}}\n")


@pytest.fixture
def fake_fgnet(tmp_path) -> Path:
    root = tmp_path / "FGNET"
    for name in ["001A02.JPG", "001A05.jpg", "002a10.JPG", "003A43a.JPG", "003A43b.JPEG"]:
        _jpg(root / "images" / name)
        _pts(root / "points" / f"{Path(name).stem.lower()}.pts")
    _jpg(root / "images" / "badname.JPG")
    _jpg(root / "images" / "004A07.JPG")  # no points file
    (root / "points" / "003a43b.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    return root


def test_fgnet_reader(fake_fgnet):
    with pytest.warns(DataWarning) as caught:
        records = datasets.load_fgnet(fake_fgnet)
    messages = " | ".join(str(w.message) for w in caught)
    assert "badname.JPG" in messages and "skipped" in messages
    assert "004A07.JPG" in messages and "003A43b.JPEG" in messages
    by_name = {r.name: r for r in records}
    assert sorted(by_name) == [
        "001A02.JPG",
        "001A05.jpg",
        "002a10.JPG",
        "003A43a.JPG",
        "003A43b.JPEG",
        "004A07.JPG",
    ]
    assert by_name["002a10.JPG"].person == "002" and by_name["002a10.JPG"].age == 10
    assert by_name["003A43a.JPG"].age == 43
    assert by_name["001A02.JPG"].landmarks.shape == (68, 2)
    assert by_name["001A02.JPG"].landmarks[1].tolist() == [1.5, 1.25]
    assert by_name["004A07.JPG"].landmarks is None
    assert by_name["003A43b.JPEG"].landmarks is None


def test_read_pts_errors(tmp_path):
    bad = tmp_path / "x.pts"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="x.pts: not a .pts file"):
        datasets.read_pts(bad)


def test_utkface_reader(tmp_path):
    for name in [
        "25_0_1_20170116174525125.jpg.chip.jpg",
        "3_1_0_20170109191508234.jpg",
        "61_1_20170109150557335.jpg.chip.jpg",
        "x_0_1_20170116174525125.jpg",
    ]:
        _jpg(tmp_path / name)
    with pytest.warns(DataWarning, match="61_1_20170109150557335"):
        records = datasets.load_utkface(tmp_path)
    assert sorted(r.age for r in records) == [3, 25]
    assert len({r.person for r in records}) == 2


def test_csv_reader(tmp_path):
    _jpg(tmp_path / "a.jpg")
    _jpg(tmp_path / "b.jpg")
    (tmp_path / "faces.csv").write_text(
        "path,age,person\na.jpg,31,alice\nb.jpg,abc,bob\nb.jpg,7,\n,5,x\n"
    )
    with pytest.warns(DataWarning) as caught:
        records = datasets.load_csv(tmp_path / "faces.csv")
    assert [(r.path.name, r.person, r.age) for r in records] == [
        ("a.jpg", "alice", 31.0),
        ("b.jpg", "b.jpg", 7.0),
    ]
    assert any("faces.csv line 3" in str(w.message) for w in caught)
    (tmp_path / "bad.csv").write_text("file,years\n")
    with pytest.raises(ValueError, match="path,age"):
        datasets.load_csv(tmp_path / "bad.csv")


def test_manifest_is_shipped():
    manifest = datasets.fgnet_manifest()
    assert len(manifest) == 1002
    assert all(len(h) == 64 for h in manifest.values())


def test_verify_reports_missing_and_extra(fake_fgnet):
    report = datasets.verify_fgnet(fake_fgnet)
    assert not report.ok
    assert "badname.JPG" in report.extra
    assert {"001A02.JPG", "001A05.jpg"} <= set(report.mismatched)  # names match in any case
    assert "001A08.JPG" in report.missing and "001A05.JPG" not in report.missing
    assert "extra: " in str(report) and "missing" in str(report)


def _zip(path: Path, entries: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "entries, link, message",
    [
        ({"/abs/x.txt": b"1"}, None, "absolute"),
        ({"a/../../x.txt": b"1"}, None, r"'\.\.'"),
        ({"a.txt": b"1"}, "evil", "symbolic link"),
    ],
)
def test_zip_extraction_refuses_unsafe_entries(tmp_path, entries, link, message):
    zpath = _zip(tmp_path / "bad.zip", entries, link)
    with pytest.raises(ValueError, match=message):
        datasets.safe_extract_zip(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fgnet_from_zip(fake_fgnet, tmp_path, monkeypatch):
    zpath = tmp_path / "FGNET.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for path in fake_fgnet.rglob("*"):
            if path.is_file():
                zf.write(path, Path("FGNET") / path.relative_to(fake_fgnet))
    monkeypatch.delenv("AGEZOO_FGNET_DIR", raising=False)
    monkeypatch.setenv("FGNET_ZIP", str(zpath))
    root = datasets.fgnet_root(cache_dir=tmp_path / "cache")
    assert root == tmp_path / "cache" / "fgnet"
    assert (root / "images" / "001A02.JPG").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_offline_download_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv("AGEZOO_FGNET_DIR", raising=False)
    monkeypatch.delenv("FGNET_ZIP", raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.fgnet_root(cache_dir=tmp_path)
    text = str(info.value)
    assert "AGEZOO_FGNET_DIR" in text and "FGNET_ZIP" in text and datasets.FGNET_URL in text
    assert not list(tmp_path.glob("*.part")), "a failed download must leave no partial file"


def test_bad_fgnet_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEZOO_FGNET_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="no images/ folder"):
        datasets.fgnet_root()


@pytest.mark.fgnet
def test_real_fgnet_counts(fgnet_dir):
    records = datasets.load_fgnet(fgnet_dir)
    assert len(records) == 1002
    assert len({r.person for r in records}) == 82
    ages = [r.age for r in records]
    assert min(ages) == 0 and max(ages) == 69
    assert all(r.landmarks is not None and r.landmarks.shape == (68, 2) for r in records)


@pytest.mark.fgnet
def test_real_fgnet_matches_manifest_and_detects_tampering(fgnet_dir, tmp_path):
    assert datasets.verify_fgnet(fgnet_dir).ok
    copy = tmp_path / "copy"
    (copy / "images").mkdir(parents=True)
    for name in ["001A02.JPG", "001A05.JPG"]:
        shutil.copy(fgnet_dir / "images" / name, copy / "images" / name)
    with open(copy / "images" / "001A05.JPG", "ab") as fh:
        fh.write(b"\0")
    report = datasets.verify_fgnet(copy)
    assert report.mismatched == ("001A05.JPG",)
    assert len(report.missing) == 1000 and not report.extra
    os.remove(copy / "images" / "001A05.JPG")
