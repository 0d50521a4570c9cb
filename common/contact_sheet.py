"""A contact sheet: a grid of aligned faces, each labelled with its person and age."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def contact_sheet(
    images: np.ndarray,
    labels: list[str],
    path: str | Path,
    cols: int = 12,
    tile: int = 112,
    eye_targets: np.ndarray | None = None,
) -> Path:
    """Writes a PNG grid of (N, S, S, 3) uint8 RGB ``images`` with a caption under each.

    ``eye_targets`` (2, 2) in image pixels, if given, is marked with small crosses so that
    alignment errors are visible at a glance.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError("no images for the contact sheet")
    rows = -(-len(images) // cols)
    caption = 18
    sheet = np.full((rows * (tile + caption), cols * tile, 3), 255, np.uint8)
    scale = tile / images.shape[1]
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        r, c = divmod(i, cols)
        y, x = r * (tile + caption), c * tile
        small = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        if eye_targets is not None:
            for ex, ey in eye_targets * scale:
                cv2.drawMarker(small, (round(ex), round(ey)), (0, 255, 0), cv2.MARKER_CROSS, 6, 1)
        sheet[y : y + tile, x : x + tile] = small
        cv2.putText(
            sheet,
            label,
            (x + 3, y + tile + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
