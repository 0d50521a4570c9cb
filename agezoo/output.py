"""What ``agezoo predict`` prints and draws: a table, JSON, CSV and annotated photos."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.calibration import INTERVAL
from common.faces import load_rgb
from common.predictor import FaceAge, ModelCard, PredictResult


def _has_video(result: PredictResult) -> bool:
    return any(f.frame is not None for f in result.faces)


def as_table(result: PredictResult) -> str:
    video = _has_video(result)
    rows = [("file", "face", "box (x,y,w,h)", "age", "± std", "90% interval", "found by")]
    if video:
        rows[0] = (rows[0][0], "frame", "time (s)", *rows[0][1:])
    for f in result.faces:
        box = ",".join(str(v) for v in f.box) if f.box else "-"
        interval = f"{f.low:.1f}–{f.high:.1f}" if np.isfinite(f.low) else "-"
        std = f"{f.std:.1f}" if np.isfinite(f.std) else "-"
        row = (f.file, str(f.face), box, f"{f.age:.1f}", std, interval, f.method)
        if video:
            frame = "-" if f.frame is None else str(f.frame)
            when = "-" if f.time is None else f"{f.time:.2f}"
            row = (row[0], frame, when, *row[1:])
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def as_json(result: PredictResult, card: ModelCard, flip: bool) -> str:
    record = {
        "model": asdict(card),
        "interval": INTERVAL,
        "flip": flip,
        "faces": [asdict(f) for f in result.faces],
        "failures": [asdict(f) for f in result.failures],
    }
    return json.dumps(_finite(record), indent=1, default=str, allow_nan=False)


def _finite(value):
    """JSON has no NaN: a value that is not finite (an L2 model's std) becomes null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def as_csv(result: PredictResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["file", "frame", "time", "face", "x", "y", "w", "h", "age", "std", "low90", "high90"]
        + ["method"]
    )
    for f in result.faces:
        box = f.box or ("", "", "", "")
        when = "" if f.time is None else f"{f.time:.3f}"
        frame = "" if f.frame is None else f.frame
        values = (f"{v:.2f}" for v in (f.age, f.std, f.low, f.high))
        writer.writerow([f.file, frame, when, f.face, *box, *values, f.method])
    return buf.getvalue()


def _label(f: FaceAge) -> str:
    return f"{f.age:.0f}" + (f" ± {f.std:.0f}" if np.isfinite(f.std) else "")


def _draw(image: Image.Image, faces: list[FaceAge]) -> Image.Image:
    """Boxes and "34 ± 4" labels drawn on the image (in place; returned for chaining)."""
    draw = ImageDraw.Draw(image)
    scale = max(image.size) / 600
    font = ImageFont.load_default(size=max(12, round(22 * scale)))
    width = max(2, round(3 * scale))
    for f in faces:
        label = _label(f)
        x, y, w, h = f.box or (0, 0, *image.size)
        draw.rectangle((x, y, x + w, y + h), outline=(40, 220, 40), width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left, bottom - top
        ty = y - th - 3 * width if y - th - 3 * width >= 0 else y + h
        draw.rectangle((x, ty, x + tw + 2 * width, ty + th + 3 * width), fill=(40, 220, 40))
        draw.text((x + width - left, ty + width - top), label, fill=(0, 0, 0), font=font)
    return image


def _destination(out_dir: Path, file: str, suffix: str, written: list[Path]) -> Path:
    dest = out_dir / f"{Path(file).stem}.annotated{suffix}"
    n = 1
    while dest in written:  # two inputs with the same name from different folders
        dest = out_dir / f"{Path(file).stem}.{n}.annotated{suffix}"
        n += 1
    return dest


def annotate(result: PredictResult, out_dir: str | Path) -> list[Path]:
    """Writes each photo with its faces boxed and labelled "34 ± 4" into ``out_dir``, and each
    video as an annotated video (the labels of a sampled frame held until the next one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[FaceAge]] = {}
    for f in result.faces:
        if not f.file.startswith("<"):  # images passed in memory have no file to annotate
            by_file.setdefault(f.file, []).append(f)
    written: list[Path] = []
    for file, faces in by_file.items():
        if any(f.frame is not None for f in faces):
            written.append(_annotate_video(Path(file), faces, out_dir, written))
            continue
        dest = _destination(out_dir, file, ".jpg", written)
        _draw(Image.fromarray(load_rgb(file)), faces).save(dest, quality=92)
        written.append(dest)
    return written


def _annotate_video(path: Path, faces: list[FaceAge], out_dir: Path, written) -> Path:
    by_frame: dict[int, list[FaceAge]] = {}
    for f in faces:
        by_frame.setdefault(f.frame, []).append(f)
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    dest = _destination(out_dir, str(path), ".mp4", written)
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():  # no MPEG-4 encoder in this OpenCV build: Motion JPEG instead
        dest = dest.with_suffix(".avi")
        writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    index, current = 0, []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            current = by_frame.get(index, current)
            if current:
                rgb = _draw(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), current)
                bgr = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
            writer.write(bgr)
            index += 1
    finally:
        capture.release()
        writer.release()
    return dest
