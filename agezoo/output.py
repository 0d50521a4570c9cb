"""What ``agezoo predict`` prints and draws: a table, JSON, CSV and annotated photos."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common.calibration import INTERVAL
from common.faces import load_rgb
from common.predictor import FaceAge, ModelCard, PredictResult


def as_table(result: PredictResult) -> str:
    rows = [("file", "face", "box (x,y,w,h)", "age", "± std", "90% interval", "found by")]
    for f in result.faces:
        box = ",".join(str(v) for v in f.box) if f.box else "-"
        interval = f"{f.low:.1f}–{f.high:.1f}" if np.isfinite(f.low) else "-"
        std = f"{f.std:.1f}" if np.isfinite(f.std) else "-"
        rows.append((f.file, str(f.face), box, f"{f.age:.1f}", std, interval, f.method))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def as_json(result: PredictResult, card: ModelCard, flip: bool) -> str:
    return json.dumps(
        {
            "model": asdict(card),
            "interval": INTERVAL,
            "flip": flip,
            "faces": [asdict(f) for f in result.faces],
            "failures": [asdict(f) for f in result.failures],
        },
        indent=1,
        default=_nan_to_none,
    )


def _nan_to_none(value):
    return None if isinstance(value, float) and not np.isfinite(value) else str(value)


def as_csv(result: PredictResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "face", "x", "y", "w", "h", "age", "std", "low90", "high90", "method"])
    for f in result.faces:
        box = f.box or ("", "", "", "")
        writer.writerow(
            [f.file, f.face, *box, *(f"{v:.2f}" for v in (f.age, f.std, f.low, f.high)), f.method]
        )
    return buf.getvalue()


def annotate(result: PredictResult, out_dir: str | Path) -> list[Path]:
    """Writes each photo with its faces boxed and labelled "34 ± 4" into ``out_dir``."""
    from PIL import Image, ImageDraw, ImageFont

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[FaceAge]] = {}
    for f in result.faces:
        by_file.setdefault(f.file, []).append(f)
    written: list[Path] = []
    for file, faces in by_file.items():
        image = Image.fromarray(load_rgb(file))
        draw = ImageDraw.Draw(image)
        scale = max(image.size) / 600
        font = ImageFont.load_default(size=max(12, round(22 * scale)))
        width = max(2, round(3 * scale))
        for f in faces:
            label = f"{f.age:.0f}" + (f" ± {f.std:.0f}" if np.isfinite(f.std) else "")
            x, y, w, h = f.box or (0, 0, *image.size)
            draw.rectangle((x, y, x + w, y + h), outline=(40, 220, 40), width=width)
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            tw, th = right - left, bottom - top
            ty = y - th - 3 * width if y - th - 3 * width >= 0 else y + h
            draw.rectangle((x, ty, x + tw + 2 * width, ty + th + 3 * width), fill=(40, 220, 40))
            draw.text((x + width - left, ty + width - top), label, fill=(0, 0, 0), font=font)
        dest = out_dir / f"{Path(file).stem}.annotated.jpg"
        n = 1
        while dest in written:  # two inputs with the same name from different folders
            dest = out_dir / f"{Path(file).stem}.{n}.annotated.jpg"
            n += 1
        image.save(dest, quality=92)
        written.append(dest)
    return written
