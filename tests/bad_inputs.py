"""A corpus of awkward inputs, made on the fly (no image of a person is ever committed): what
``agezoo predict`` and a CSV data set must survive. Used by the tests and by
``benchmarks/faults.py``.

``make_corpus(folder)`` writes the files and returns ``{name: reason}``: the words the
failure line must hold for a bad input, ``None`` for one that must be aged. Faces are the
seeded synthetic faces of ``common.synthetic``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from common.synthetic import make_synthetic


def _face(seed: int = 0, size: int = 96) -> np.ndarray:
    return make_synthetic(1, 1, size=size, seed=seed).images[0]


def _jpeg(image: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=92, **kwargs)
    return buf.getvalue()


def make_corpus(folder: str | Path, tiny_images: int = 0) -> dict[str, str | None]:
    """Writes the corpus into ``folder`` (and ``folder/many/`` with ``tiny_images`` 8×8
    images when asked); returns what each entry must give, by its path inside ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    face = _face()
    expect: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (folder / name).write_bytes(data)
        expect[name] = reason

    def put_image(name: str, image: Image.Image, fmt: str, **kwargs) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        put(name, buf.getvalue(), None)

    put("good.jpg", _jpeg(face), None)
    put("empty.jpg", b"", "cannot decode")
    put("text.png", b"this is a shopping list, not a photo\n", "cannot decode")
    put("truncated.jpg", _jpeg(face)[:400], "cannot decode")
    put("fake-header.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(64), "cannot decode")
    put("one-pixel.png", _png(np.zeros((1, 1, 3), np.uint8)), "too small to hold a face")
    put_image(
        "rgba.png", Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, "u1")])), "PNG"
    )
    put_image("palette.png", Image.fromarray(face).convert("P"), "PNG")
    put_image("sixteen-bit.png", Image.fromarray(face[..., 0].astype(np.uint16) * 257), "PNG")
    put_image("cmyk.jpg", Image.fromarray(face).convert("CMYK"), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown upright
    put(
        "exif-rotated.jpg",
        _jpeg(np.ascontiguousarray(np.rot90(face, 1)), exif=exif.tobytes()),
        None,
    )
    frames = [Image.fromarray(_face(seed)) for seed in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buf.getvalue(), None)
    # 20000 × 20000 pixels declared, a few kB on disk: past Pillow's decompression-bomb limit
    put("bomb.png", _png(np.zeros((20000, 20000), np.uint8), compress=9), "decompression bomb")
    put("ünïcødé 照片.jpg", _jpeg(_face(4)), None)
    raw = os.fsencode(str(folder)) + b"/latin1-\xe9t\xe9.jpg"  # not UTF-8 on disk
    with open(raw, "wb") as f:
        f.write(_jpeg(_face(5)))
    expect[os.fsdecode(b"latin1-\xe9t\xe9.jpg")] = None
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    expect["dangling.jpg"] = "dangling symbolic link"
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    expect["loop-a.jpg"] = expect["loop-b.jpg"] = "symbolic link loop"
    locked = folder / "locked.jpg"
    locked.write_bytes(_jpeg(_face(6)))
    locked.chmod(0)
    # root reads every file: there it is simply a good photo
    expect["locked.jpg"] = None if os.access(locked, os.R_OK) else "permission denied"
    if tiny_images:
        many = folder / "many"
        many.mkdir()
        tiny = _png(np.full((8, 8, 3), 128, np.uint8))
        for i in range(tiny_images):
            (many / f"{i:05d}.png").write_bytes(tiny)
            expect[f"many/{i:05d}.png"] = "too small to hold a face"
    return expect


def _png(array: np.ndarray, compress: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", compress_level=compress)
    return buf.getvalue()
