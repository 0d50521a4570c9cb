import io

import cv2
import numpy as np
import pytest
from PIL import Image

from common import faces
from common.datasets import load_fgnet
from common.faces import AlignSpec, align_face, load_rgb


def _save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


def test_load_modes(tmp_path):
    gray = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (10, 1))
    cases = {
        "L.png": Image.fromarray(gray),
        "P.png": Image.fromarray(gray).convert("P"),
        "RGBA.png": Image.fromarray(np.dstack([gray] * 3 + [gray])),
        "CMYK.jpg": Image.fromarray(np.dstack([gray] * 3)).convert("CMYK"),
        "I16.png": Image.fromarray(gray.astype(np.uint16) * 257),
    }
    for name, im in cases.items():
        arr = load_rgb(_save(im, tmp_path / name))
        assert arr.shape == (10, 20, 3) and arr.dtype == np.uint8, name
        # Grey stays grey, and the 16-bit ramp is scaled back to 0..190, not clipped at 255.
        if name != "CMYK.jpg":
            np.testing.assert_allclose(arr[..., 0], gray, atol=1, err_msg=name)
            assert (arr[..., 0] == arr[..., 2]).all(), name


def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :5] = 255  # bright stripe on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    path = _save(Image.fromarray(arr), tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(path)
    assert out.shape == (40, 20, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the stripe is now at the top


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_corrupt_files_name_the_file(tmp_path, content):
    if content == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
            buf, "JPEG"
        )
        content = buf.getvalue()[:300]
    path = tmp_path / "001A02.JPG"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="001A02.JPG: cannot decode"):
        load_rgb(path)


def test_eyes_land_on_their_targets_in_the_pixels():
    # Two bright dots at known "eye" positions in a rotated layout must appear at the targets.
    img = np.zeros((300, 260, 3), np.uint8)
    eyes = np.array([[80.0, 150.0], [170.0, 120.0]])
    for x, y in eyes:
        cv2.circle(img, (int(x), int(y)), 3, (255, 255, 255), -1)
    landmarks = np.zeros((68, 2))
    landmarks[list(faces.FGNET_LEFT_EYE)] = eyes[0]
    landmarks[list(faces.FGNET_RIGHT_EYE)] = eyes[1]
    spec = AlignSpec(size=128, margin=0.2)
    out = align_face(img, spec, landmarks)
    assert out.method == "landmarks" and out.image.shape == (128, 128, 3)
    bright = out.image[..., 0].astype(float)
    for target in spec.eye_targets():
        x0, y0 = (target - 6).astype(int)
        patch = bright[y0 : y0 + 13, x0 : x0 + 13]
        cy, cx = np.unravel_index(patch.argmax(), patch.shape)
        assert abs(x0 + cx - target[0]) <= 1.5 and abs(y0 + cy - target[1]) <= 1.5


def test_no_face_falls_back_to_centre_crop():
    img = np.full((90, 160, 3), 120, np.uint8)
    out = align_face(img, AlignSpec(size=48))
    assert out.method == "center" and out.image.shape == (48, 48, 3)


def test_margin_widens_the_crop():
    tight, wide = AlignSpec(margin=0.0).eye_targets(), AlignSpec(margin=0.5).eye_targets()
    assert (tight[1, 0] - tight[0, 0]) > (wide[1, 0] - wide[0, 0])


def test_align_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        align_face(np.zeros((10, 10), np.uint8), AlignSpec())


@pytest.mark.fgnet
def test_haar_path_finds_fgnet_faces_near_their_landmarks(fgnet_dir):
    records = [r for r in load_fgnet(fgnet_dir) if r.person in ("002", "006", "040")]
    errors = []
    for rec in records:
        image = load_rgb(rec.path)
        out = align_face(image, AlignSpec(size=64, detector="haar"), landmarks=None)
        truth = faces.eyes_from_landmarks(rec.landmarks)
        if out.method in ("haar_eyes", "haar_face"):
            iod = np.linalg.norm(truth[1] - truth[0])
            errors.append(np.linalg.norm(out.eyes - truth, axis=1).max() / iod)
    assert len(errors) >= 0.8 * len(records), "the detector should find most FG-NET faces"
    assert np.median(errors) < 0.15, f"detected eyes are far from the landmarks: {errors}"
