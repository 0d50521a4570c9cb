"""The speed benchmark's interleaved rounds: turn order, medians and per-round ratios."""

from benchmarks.predict_speed import interleaved


def _side(name, speeds, calls):
    it = iter(speeds)

    def time_one(paths):
        calls.append(name)
        return {"photos": len(paths), "photos_per_s": next(it)}

    return time_one


def test_rounds_take_turns_and_report_medians_of_same_round_ratios():
    calls = []
    sides = {
        "peer": _side("peer", [100.0, 50.0, 80.0], calls),
        "onnx": _side("onnx", [150.0, 140.0, 200.0], calls),
    }
    out = interleaved(["a.jpg", "b.jpg"], sides, rounds=3)
    assert calls == ["peer", "onnx"] * 3  # each round: the peer, then every backend
    assert out["peer"]["photos_per_s"] == 80.0
    assert out["peer"]["rounds"] == [100.0, 50.0, 80.0]
    assert out["onnx"]["photos_per_s"] == 150.0
    # same-round ratios 1.5, 2.8, 2.5: the median ratio, not the ratio of the medians (1.88)
    assert out["onnx"]["vs_peer_rounds"] == [1.5, 2.8, 2.5]
    assert out["onnx"]["vs_peer"] == 2.5
    assert "vs_peer" not in out["peer"]


def test_a_skipped_peer_keeps_its_reason_and_leaves_no_ratio():
    sides = {
        "peer": lambda paths: {"skipped": "no peer venv"},
        "onnx": _side("onnx", [120.0, 130.0], []),
    }
    out = interleaved(["a.jpg"], sides, rounds=2)
    assert out["peer"] == {"skipped": "no peer venv"}
    assert out["onnx"]["photos_per_s"] == 125.0
    assert out["onnx"]["vs_peer"] is None
