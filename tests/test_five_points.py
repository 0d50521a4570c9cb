"""The compiled walker of dlib's 5-point trees: its reader, its build, and dlib's points."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from common.datasets import load_fgnet
from common.detectors import blazeface, five_points, five_points_build
from common.faces import load_rgb

DAT = blazeface.five_points_path()
needs_model = pytest.mark.skipif(
    DAT is None, reason="dlib or face-recognition-models is not installed"
)
needs_compiler = pytest.mark.skipif(
    five_points_build.compiler() is None, reason="no C compiler on this machine"
)


def _int(value: int) -> bytes:
    """dlib's pack_int: a byte of size | sign, then the magnitude's bytes, little-endian."""
    magnitude = abs(value)
    size = max(1, (magnitude.bit_length() + 7) // 8)
    return bytes([size | (0x80 if value < 0 else 0)]) + magnitude.to_bytes(size, "little")


def _float(value: float) -> bytes:
    mantissa, exponent = float(value).as_integer_ratio()
    shift = exponent.bit_length() - 1  # the denominator is a power of two
    return _int(mantissa) + _int(-shift)


def _column(values) -> bytes:
    return _int(-len(values)) + _int(-1) + b"".join(_float(v) for v in values)


def test_reader_parses_a_tiny_model_in_dlibs_serialisation(tmp_path):
    # One landmark, one cascade of two depth-1 trees, two sampled pixels.
    trees = [((0, 1, 2.5), ([0.25, -0.5], [0.125, 1.0])), ((1, 0, -3.0), ([1.5, 0.0], [0, 2]))]
    data = _int(1) + _column([0.5, 0.75]) + _int(1) + _int(len(trees))
    for (i1, i2, thresh), leaves in trees:
        data += _int(1) + _int(i1) + _int(i2) + _float(thresh)
        data += _int(len(leaves)) + b"".join(_column(leaf) for leaf in leaves)
    data += _int(1) + _int(2) + _int(0) + _int(0)  # anchors
    data += _int(1) + _int(2) + _float(0.1) + _float(-0.2) + _float(0.3) + _float(0.4)
    path = tmp_path / "tiny.dat"
    path.write_bytes(data)
    model = five_points_build.read_shape_predictor(path)
    assert model.initial.tolist() == [[0.5, 0.75]]
    assert model.idx1.tolist() == [[[0], [1]]] and model.idx2.tolist() == [[[1], [0]]]
    assert model.thresh.tolist() == [[[2.5], [-3.0]]]
    assert model.leaves.tolist() == [[[[0.25, -0.5], [0.125, 1.0]], [[1.5, 0.0], [0, 2]]]]
    assert np.allclose(model.deltas, [[[0.1, -0.2], [0.3, 0.4]]])
    assert model.depth == 1
    path.write_bytes(data[:-3])
    with pytest.raises(ValueError, match="tiny.dat: cut short"):
        five_points_build.read_shape_predictor(path)


@pytest.fixture(scope="module")
def walker(tmp_path_factory):
    if DAT is None or five_points_build.compiler() is None:
        pytest.skip("needs dlib's 5-point model and a C compiler")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGEZOO_CACHE", str(tmp_path_factory.mktemp("five-points-cache")))
        library, arrays = five_points_build.build(
            DAT
        )  # checked against dlib on 300 generated faces
    return five_points.FivePoints(library, arrays)


@needs_model
@needs_compiler
def test_walker_gives_dlibs_points_on_other_generated_faces(walker):
    assert five_points_build.mismatches(walker, DAT, faces=100, seed=7) == 0


@needs_model
@needs_compiler
def test_walker_refuses_a_window_outside_the_image(walker):
    image = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        walker(image, (0, 0, 20, 20), (0, 0, 61, 50))


@needs_model
@needs_compiler
def test_refine_eyes_equal_through_walker_and_dlib_on_fgnet(walker, monkeypatch):
    root = os.environ.get("AGEZOO_FGNET_DIR")
    if not root or not Path(root, "images").is_dir():
        pytest.skip("AGEZOO_FGNET_DIR is not set: real FG-NET tests need a local copy")
    photos = [load_rgb(r.path) for r in load_fgnet(root)[::50]]
    boxes = [blazeface.blazeface_faces(p)[0][1] for p in photos]
    monkeypatch.setattr(blazeface, "five_points_walker", lambda dat: walker)
    ours = [blazeface.refine_eyes(p, b) for p, b in zip(photos, boxes, strict=True)]
    monkeypatch.setattr(blazeface, "five_points_walker", lambda dat: None)
    dlibs = [blazeface.refine_eyes(p, b) for p, b in zip(photos, boxes, strict=True)]
    assert len(ours) == 21
    assert all(np.array_equal(a, b) for a, b in zip(ours, dlibs, strict=True))


@needs_model
@needs_compiler
def test_walker_is_shared_by_threads(walker):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    expected = walker(image, (10, 20, 70, 80), (0, 0, 100, 120))
    seen = []

    def run():
        seen.extend(walker(image, (10, 20, 70, 80), (0, 0, 100, 120)) for _ in range(50))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 100 and all(np.array_equal(s, expected) for s in seen)


@needs_model
def test_a_damaged_build_gives_way_to_dlib(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path))
    library, arrays = five_points.built_files(DAT)
    library.parent.mkdir(parents=True)
    library.write_bytes(b"not a shared library")
    arrays.write_bytes(b"not an npz")
    five_points.five_points_walker.cache_clear()
    try:
        assert five_points.five_points_walker(DAT) is None
    finally:
        five_points.five_points_walker.cache_clear()


@needs_model
def test_setup_without_a_compiler_keeps_dlib_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGEZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(five_points_build, "compiler", lambda: None)
    assert five_points_build.main([]) == 0  # not a failure of the set-up
    assert "stay on dlib's own predictor: no C compiler" in capsys.readouterr().err
    assert not any(tmp_path.rglob("five-points-*"))
