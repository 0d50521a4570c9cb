"""The throughput benchmark's warm-up rule and sanity flags, and one real run of it."""

import json

import pytest

from benchmarks import throughput
from benchmarks.throughput import sanity, settle, summarise


def test_settle_skips_a_compiling_first_repeat():
    # Repeat 0 compiles; repeat 1 is the first fast one; repeat 2 is no faster: settled after it.
    timed, warm, settled = settle([1.0, 50.0, 52.0, 51.0, 50.0, 49.0], 2, 3)
    assert (timed, warm, settled) == ([51.0, 50.0, 49.0], 3, True)


def test_settle_keeps_two_warmup_repeats_at_the_least():
    assert settle([50.0] * 5, 0, 3) == ([50.0] * 3, 2, True)
    assert settle([50.0] * 6, 3, 3) == ([50.0] * 3, 3, True)


def test_settle_reports_a_timing_still_speeding_up():
    timed, _, settled = settle([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 2, 3)
    assert not settled and timed == [8.0, 16.0, 32.0]


def _side(rates, images=24):
    return summarise(rates, 2, 3, images)


def test_sanity_ok_for_settled_steady_timings_in_range():
    assert sanity(_side([50, 50, 50, 50, 50]), _side([30, 45, 46, 45, 45, 45])) == ("ok", [])


def test_sanity_flags_a_bare_timing_with_compilation_inside():
    # The dry run of 2026-12-01: bare timed on its compiling calls, pipeline on compiled ones.
    flag, reasons = sanity(_side([0.5, 1.0, 2.5]), _side([30, 37, 38, 38, 37]))
    assert flag == "suspect"
    assert any("bare timing never settled" in r for r in reasons)
    assert any("outside 0.3-1.1" in r for r in reasons)


def test_sanity_names_an_out_of_range_efficiency_with_clean_timings():
    flag, reasons = sanity(_side([10, 10, 10, 10, 10]), _side([50, 50, 50, 50, 50]))
    assert flag == "suspect" and "do not do the same work" in reasons[0]
    flag, reasons = sanity(_side([100, 100, 100, 100, 100]), _side([20, 20, 20, 20, 20]))
    assert flag == "suspect" and "work outside the model" in reasons[0]


def test_a_spread_flag_says_how_steady_the_same_rounds_ratios_were():
    # Both sides sped up together in the last round (the other lane of a dry run went idle).
    flag, reasons = sanity(_side([69, 70, 69, 75, 94]), _side([75, 75, 73, 75, 86]))
    assert flag == "suspect"
    assert reasons == [
        "bare repeats spread 33% (a busy or throttled device?); "
        "the same rounds' pipeline / bare ratios spread 14%"
    ]


def test_sanity_flags_spread_and_unequal_work():
    flag, reasons = sanity(_side([50, 50, 30, 60, 45]), _side([40, 40, 40, 40, 40], images=32))
    assert flag == "suspect"
    assert any("bare repeats spread" in r for r in reasons)
    assert any("unequal work: 24 images per bare repeat, 32" in r for r in reasons)


@pytest.mark.slow
def test_a_torch_run_writes_settled_timings_and_its_flag(tmp_path, capsys):
    args = ["--framework", "torch", "--model", "mobilenet_v2", "--size", "32", "--batch", "4"]
    args += ["--steps", "2", "--repeats", "2", "--out", str(tmp_path)]
    result = throughput.main([*args, "--mode", "infer"])
    written = json.loads(
        (tmp_path / "throughput-torch-mobilenet_v2-32px-infer-fp32.json").read_text()
    )
    assert written["flag"] == result["flag"] in ("ok", "suspect")
    for side in ("bare", "pipeline"):
        timing = written[side]
        assert timing["images_per_repeat"] == 8
        assert timing["warmup_repeats"] >= 2
        assert len(timing["all"]) >= timing["warmup_repeats"] + 2
    assert written["efficiency"] == pytest.approx(
        written["pipeline_images_per_s"] / written["bare_images_per_s"], abs=1e-3
    )
    line = capsys.readouterr().out
    assert f"efficiency {written['efficiency']:.3f} {written['flag']}" in line


@pytest.mark.slow
def test_a_torch_training_run_times_both_sides_on_the_same_epochs(tmp_path):
    args = ["--framework", "torch", "--model", "mobilenet_v2", "--size", "32", "--batch", "4"]
    args += ["--steps", "2", "--repeats", "2", "--mode", "train", "--out", str(tmp_path)]
    result = throughput.main(args)
    bare, pipeline = result["bare"], result["pipeline"]
    epochs = 2 + throughput.SPARE_EPOCHS + 2
    assert len(bare["all"]) == len(pipeline["all"]) == epochs  # one bare repeat an epoch
    assert bare["warmup_repeats"] == pipeline["warmup_repeats"] >= 2  # the same rounds timed
    warm = bare["warmup_repeats"]
    for side in (bare, pipeline):
        assert side["images_per_repeat"] == 8
        assert side["timed"] == side["all"][warm : warm + 2]


def test_sanity_says_when_an_efficiency_out_of_range_is_within_the_noise():
    flag, reasons = sanity(_side([50, 50, 45, 50, 55]), _side([30, 56, 56, 52, 62, 60]))
    assert flag == "suspect" and "within the timing noise" in reasons[0]


def test_zero_steps_is_refused_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--framework", "torch", "--steps", "0"])
    assert exit_info.value.code == 2
    assert "--steps: must be 1 or more, got 0" in capsys.readouterr().err
