"""The GPU bundle's FG-NET copy: JPEGs re-encoded (same size and mode), the rest as it is."""

import numpy as np
from PIL import Image

from benchmarks.gpu_bundle import copy_fgnet


def test_copy_fgnet_reencodes_jpegs_and_keeps_the_rest(tmp_path):
    src, dest = tmp_path / "fgnet", tmp_path / "bundle"
    (src / "images").mkdir(parents=True)
    (src / "points").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 40, 3), np.uint8)).save(
        src / "images" / "001A02.JPG", quality=100
    )
    Image.fromarray(rng.integers(0, 255, (30, 50), np.uint8)).save(
        src / "images" / "002A05.JPG", quality=100
    )
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "images" / "003A01.png")
    (src / "points" / "001a02.pts").write_text("version: 1\nn_points: 68\n{\n}\n")

    copy_fgnet(src, dest)
    copy_fgnet(src, dest)  # a second call leaves what is there

    for name in ("001A02.JPG", "002A05.JPG"):
        before, after = Image.open(src / "images" / name), Image.open(dest / "images" / name)
        assert (after.size, after.mode, after.format) == (before.size, before.mode, "JPEG")
        assert (dest / "images" / name).stat().st_size < (src / "images" / name).stat().st_size
    png = "003A01.png"
    assert (dest / "images" / png).read_bytes() == (src / "images" / png).read_bytes()
    assert (dest / "points" / "001a02.pts").read_text() == (
        src / "points" / "001a02.pts"
    ).read_text()
    assert not list((dest / "images").glob(".tmp-*"))
