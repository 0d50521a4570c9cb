"""The held-out scorer's figures on a fake predictor (no model, no data set, no peer)."""

from pathlib import Path

import pytest

from benchmarks.heldout import score_set
from common.datasets.base import Record
from common.predictor import FaceAge, PredictResult


class FakePredictor:
    """Ages each photo as listed; ``center`` marks a photo in which no face was found."""

    def __init__(self, answers):
        self.answers = answers

    def predict_inputs(self, paths, **kwargs):
        assert kwargs["fallback_center"] is True and kwargs["every_face"] is False
        faces = [
            FaceAge(p, 0, None, age, 3.0, age - 5, age + 5, method)
            for p, (age, method) in zip(paths, self.answers, strict=True)
        ]
        return PredictResult(faces=faces, images=len(paths))


def test_faces_found_leaves_out_the_centre_crops(tmp_path):
    records = []
    for k, age in enumerate([4.0, 5.0, 30.0]):
        path = tmp_path / f"{k}.jpg"
        path.write_bytes(b"")
        records.append(Record(Path(path), f"p{k}", age))
    answers = [(6.0, "blazeface_5pt"), (50.0, "center"), (31.0, "blazeface_5pt")]
    entry = score_set(FakePredictor(answers), records, peer_python=None)
    ours = entry["agezoo"]
    assert ours["n"] == 3 and ours["methods"] == {"blazeface_5pt": 2, "center": 1}
    assert ours["mae"] == pytest.approx((2 + 45 + 1) / 3, abs=1e-3)
    assert ours["by_band"]["0-9"] == [pytest.approx(23.5), 2]
    found = ours["faces_found"]
    assert found["n"] == 2 and found["mae"] == pytest.approx(1.5)
    assert found["by_band"]["0-9"] == [pytest.approx(2.0), 1]
    # the bootstrap intervals: the one child a face was found for is the same in every draw
    assert found["ci95"]["by_band"]["0-9"] == [2.0, 2.0]
    low, high = ours["ci95"]["by_band"]["0-9"]
    assert low <= 23.5 <= high and low < high
    assert "skipped" in entry["peer"]
