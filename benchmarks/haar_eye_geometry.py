"""Where do FG-NET's landmark eyes sit inside OpenCV's Haar face box, and how well do the
Haar eye detections agree with the landmarks?

Calibrates ``common.faces.HAAR_EYE_X`` / ``HAAR_EYE_Y`` and measures the detector fallback.
Usage: AGEZOO_FGNET_DIR=... python -m benchmarks.haar_eye_geometry
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.datasets import fgnet_root, load_fgnet
from common.faces import detect_eyes, detect_face, eyes_from_landmarks, load_rgb

OUT = Path(__file__).parent / "results" / "haar_eye_geometry.json"


def main() -> None:
    records = load_fgnet(fgnet_root())
    rel, eye_err, counts = [], [], Counter()
    t0 = time.perf_counter()
    for rec in tqdm(records, desc="haar"):
        gray = cv2.equalizeHist(cv2.cvtColor(load_rgb(rec.path), cv2.COLOR_RGB2GRAY))
        truth = eyes_from_landmarks(rec.landmarks)
        face = detect_face(gray)
        if face is None:
            counts["no_face"] += 1
            continue
        x, y, w, h = face
        inside = (x <= truth[:, 0]).all() and (truth[:, 0] <= x + w).all()
        counts["face" if inside else "face_elsewhere"] += 1
        if not inside:
            continue
        rel.append(((truth[:, 0] - x) / w).tolist() + [float(((truth[:, 1] - y) / h).mean())])
        eyes = detect_eyes(gray, face)
        if eyes is not None:
            counts["eyes"] += 1
            iod = np.linalg.norm(truth[1] - truth[0])
            eye_err.append(float(np.linalg.norm(eyes - truth, axis=1).max() / iod))
    rel = np.array(rel)
    result = {
        "images": len(records),
        "counts": dict(counts),
        "eye_x_median": np.median(rel[:, :2], axis=0).round(3).tolist(),
        "eye_y_median": round(float(np.median(rel[:, 2])), 3),
        "eye_detection_error_over_iod_median": round(float(np.median(eye_err)), 3),
        "eye_detection_error_over_iod_p90": round(float(np.percentile(eye_err, 90)), 3),
        "seconds": round(time.perf_counter() - t0, 1),
        "opencv": cv2.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
