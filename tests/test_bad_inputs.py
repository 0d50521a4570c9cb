"""The bad-input corpus (``tests/bad_inputs.py``) through ``agezoo predict`` and through a CSV
data set's cache build: every bad entry named with its reason, every good one used."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import make_corpus

import weights
from common.cache import cached_faces
from common.datasets import DataWarning, load_csv
from common.faces import AlignSpec

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder)


def test_predict_names_every_bad_input_and_ages_every_good_one(corpus):
    folder, expect = corpus
    assert weights.default_age_model(), "no released default model to predict with"
    run = subprocess.run(
        [sys.executable, "-c", "from agezoo.cli import main; raise SystemExit(main())",
         "predict", str(folder), "--json"],
        capture_output=True, timeout=300,
    )  # fmt: skip
    err = os.fsdecode(run.stderr)
    assert run.returncode == 1, err
    assert "Traceback" not in err
    aged = {os.path.relpath(f["file"], folder) for f in json.loads(run.stdout)["faces"]}
    good = {name for name, reason in expect.items() if reason is None}
    assert aged == good
    lines = {os.path.relpath(line.split(": ", 1)[0], folder): line for line in err.splitlines()}
    for name, reason in expect.items():
        if reason is not None:
            assert reason in lines.get(name, ""), f"{name}: {lines.get(name)!r}"


def test_a_csv_data_set_on_the_corpus_skips_and_counts_the_bad_ones(corpus, tmp_path):
    folder, expect = corpus
    csv = tmp_path / "faces.csv"
    rows = ["path,age"] + [f"{folder / name},30" for name in expect]
    csv.write_bytes(os.fsencode("\n".join(rows) + "\n"))
    records = load_csv(csv)
    assert len(records) == len(expect)
    with pytest.warns(DataWarning) as caught:
        arrays = cached_faces(
            records, AlignSpec(size=48, detector="blazeface"), "corpus", tmp_path / "c",
            progress=False,
        )  # fmt: skip
    bad = {name: reason for name, reason in expect.items() if reason is not None}
    # the cache build reads every file itself: a face-less photo is centre-cropped (tight crops)
    skipped = {s["file"]: s["error"] for s in arrays.meta["skipped"]}
    for name, reason in bad.items():
        if reason == "permission denied":
            reason = "Permission denied"
        if "symbolic link" in reason:
            reason = "symbolic link" if "loop" in reason else "No such file"
        assert reason in skipped.get(Path(name).name, ""), (name, skipped.get(Path(name).name))
    assert len(arrays) == len(expect) - len(bad)
    assert set(arrays.names) == {Path(n).name for n, r in expect.items() if r is None}
    assert len(caught) >= len(bad)
