import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from common import cache
from common.cache import cached_faces
from common.datasets import DataWarning, Record, load_fgnet
from common.faces import AlignSpec


@pytest.fixture
def records(tmp_path):
    rng = np.random.default_rng(0)
    recs = []
    for i in range(20):
        path = tmp_path / "img" / f"{i:03d}A{i + 10:02d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (50, 40, 3), np.uint8)).save(path)
        recs.append(Record(path, f"{i % 5:03d}", float(i + 10)))
    bad = tmp_path / "img" / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    recs.append(Record(bad, "009", 30.0))
    return recs


def test_build_skip_corrupt_and_reuse(records, tmp_path, monkeypatch):
    spec = AlignSpec(size=32, detector="haar")
    with pytest.warns(DataWarning, match="corrupt.jpg: cannot decode"):
        arrays = cached_faces(
            records, spec, "toy", cache_dir=tmp_path / "c", workers=2, progress=False
        )
    assert arrays.images.shape == (20, 32, 32, 3) and arrays.images.dtype == np.uint8
    assert arrays.meta["skipped"][0]["file"] == "corrupt.jpg"
    assert arrays.meta["method_counts"] == {"center": 20}
    assert list(arrays.names[:2]) == ["000A10.jpg", "001A11.jpg"]

    def fail(*a, **k):
        raise AssertionError("a valid cache entry was rebuilt")

    monkeypatch.setattr(cache, "preprocess", fail)
    again = cached_faces(records, spec, "toy", cache_dir=tmp_path / "c", progress=False)
    np.testing.assert_array_equal(again.images, arrays.images)
    assert again.key == arrays.key
    assert not [p for p in (tmp_path / "c" / "arrays").iterdir() if p.name.startswith(".")]


def _cut_images(entry):
    data = (entry / "images.npy").read_bytes()
    (entry / "images.npy").write_bytes(data[: len(data) // 2])


def _flip_image_byte(entry):
    data = bytearray((entry / "images.npy").read_bytes())
    data[-7] ^= 0x40  # a pixel, not the header: only the checksum can see it
    (entry / "images.npy").write_bytes(bytes(data))


def _cut_meta(entry):
    text = (entry / "meta.json").read_text()
    (entry / "meta.json").write_text(text[: len(text) // 3])


def _change_an_age(entry):
    meta = json.loads((entry / "meta.json").read_text())
    meta["ages"][3] += 10  # still valid JSON: only the checksum can see it
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_cut_images, "images.npy unreadable"),
        (_flip_image_byte, "images.npy changed since it was written"),
        (_cut_meta, "meta.json unreadable"),
        (_change_an_age, "meta.json changed since it was written"),
    ],
)
def test_a_damaged_entry_is_named_and_rebuilt_never_read(records, tmp_path, damage, reason):
    spec = AlignSpec(size=32, detector="haar")
    good = [r for r in records if r.path.name != "corrupt.jpg"]
    clean = cached_faces(good, spec, "toy", cache_dir=tmp_path / "c", progress=False)
    (entry,) = (tmp_path / "c" / "arrays").iterdir()
    damage(entry)
    with pytest.warns(DataWarning, match=f"{entry.name}: {reason}.*rebuilding it"):
        again = cached_faces(good, spec, "toy", cache_dir=tmp_path / "c", progress=False)
    np.testing.assert_array_equal(again.images, clean.images)
    assert (entry / "images.npy").read_bytes() == _npy_bytes(clean.images)
    assert [p.name for p in (tmp_path / "c" / "arrays").iterdir()] == [entry.name]


def _npy_bytes(images):
    import io

    buf = io.BytesIO()
    np.save(buf, images)
    return buf.getvalue()


def test_any_change_changes_the_key(records):
    spec = AlignSpec(size=32, detector="haar")
    base = cache.cache_key(records, spec, "toy")
    assert cache.cache_key(records, AlignSpec(size=32, margin=0.3, detector="haar"), "toy") != base
    assert cache.cache_key(records, AlignSpec(size=48, detector="haar"), "toy") != base
    relabelled = [Record(r.path, r.person, r.age + 1) for r in records]
    assert cache.cache_key(relabelled, spec, "toy") != base
    with open(records[0].path, "ab") as fh:
        fh.write(b"\0")
    assert cache.cache_key(records, spec, "toy") != base


def test_killed_build_leaves_no_entry(records, tmp_path, monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "save", killed)
    with pytest.raises(KeyboardInterrupt), pytest.warns(DataWarning):
        cached_faces(
            records,
            AlignSpec(size=16, detector="haar"),
            "toy",
            cache_dir=tmp_path / "c",
            workers=1,
            progress=False,
        )
    assert list((tmp_path / "c" / "arrays").iterdir()) == []


def test_detector_is_part_of_the_key(records):
    haar = cache.cache_key(records, AlignSpec(size=32, detector="haar"), "toy")
    assert cache.cache_key(records, AlignSpec(size=32, detector="mtcnn"), "toy") != haar


@pytest.mark.parametrize("how", ["stdin", "unguarded script"])
def test_cached_faces_from_unguarded_callers_finishes(records, tmp_path, how):
    """Worker pools that re-import __main__ hang from `python -` and unguarded scripts."""
    code = textwrap.dedent(
        f"""
        import warnings
        from pathlib import Path
        from common.cache import cached_faces
        from common.datasets import Record
        from common.faces import AlignSpec
        warnings.simplefilter("ignore")
        paths = sorted(Path({str(records[0].path.parent)!r}).glob("0*.jpg"))
        recs = [Record(p, p.stem[:3], 20.0) for p in paths]
        arrays = cached_faces(recs, AlignSpec(size=24, detector="haar"), "piped",
                              cache_dir={str(tmp_path / "c")!r}, workers=2, progress=False)
        print("built", len(arrays))
        """
    )
    if how == "stdin":
        cmd, stdin = [sys.executable, "-"], code
    else:
        script = tmp_path / "quick.py"
        script.write_text(code)
        cmd, stdin = [sys.executable, str(script)], None
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "built 20" in result.stdout
    assert "Traceback" not in result.stderr


def test_empty_records_error():
    with pytest.raises(ValueError, match="no images"):
        cached_faces([], AlignSpec(), "toy")


@pytest.mark.fgnet
def test_real_fgnet_cache_eyes_on_target(fgnet_dir, tmp_path):
    arrays = cached_faces(
        load_fgnet(fgnet_dir), AlignSpec(size=48), "fgnet", cache_dir=tmp_path, progress=False
    )
    assert arrays.images.shape == (1002, 48, 48, 3)
    assert arrays.meta["method_counts"] == {"landmarks": 1002}
    assert arrays.meta["skipped"] == []
    # Every image's transformed eye landmarks land on the targets (in output pixels).
    assert arrays.meta["eye_residual_px_max"] < 0.5
    # Grayscale sources became 3 equal channels, colour ones kept their colour.
    grey = (arrays.images[..., 0] == arrays.images[..., 2]).all(axis=(1, 2))
    assert 175 <= grey.sum() < 250


@pytest.mark.fgnet
@pytest.mark.parametrize("detector", ["haar", "mtcnn", "blazeface"])
def test_detectors_on_a_thread_pool_lose_no_image(fgnet_dir, tmp_path, detector):
    """Shared OpenCV cascades fail when two threads detect at once; each thread has its own."""
    records = [Record(r.path, r.person, r.age) for r in load_fgnet(fgnet_dir)[:: 1002 // 40]]
    arrays = cached_faces(
        records,
        AlignSpec(size=32, detector=detector),
        "nolm",
        cache_dir=tmp_path,
        workers=2,
        progress=False,
    )
    assert arrays.meta["skipped"] == [] and len(arrays) == len(records)
    counts = arrays.meta["method_counts"]
    method = {"mtcnn": "mtcnn", "haar": "haar_eyes", "blazeface": "blazeface_5pt"}[detector]
    assert counts.get(method, 0) >= 0.8 * len(records), counts
