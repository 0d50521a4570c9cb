"""Timing rules of the throughput benchmark: when a warm-up has settled, and which
efficiencies a reader should not trust (``benchmarks.throughput``)."""

from __future__ import annotations

import statistics

SETTLE_TOL = 0.05  # a repeat at most 5 % faster than the one before: the warm-up is over
EFFICIENCY_RANGE = (0.3, 1.1)  # outside it, an efficiency is flagged
MAX_SPREAD = 0.25  # (max - min) / median of the timed repeats above it: an unsteady timing


def settle(rates: list[float], min_warmup: int, repeats: int) -> tuple[list[float], int, bool]:
    """(timed rates, warm-up repeats, settled) from images/s of consecutive repeats.

    The warm-up lasts at least ``max(2, min_warmup)`` repeats and until a repeat ran at most
    ``SETTLE_TOL`` faster than the one before it; the ``repeats`` after it are timed. Not
    settled (fewer rates than that): the last ``repeats`` are returned and ``settled`` is False.
    """
    for k in range(max(2, min_warmup), len(rates) - repeats + 1):
        if rates[k - 1] <= rates[k - 2] * (1 + SETTLE_TOL):
            return rates[k : k + repeats], k, True
    return rates[-repeats:], max(0, len(rates) - repeats), False


def summarise(rates: list[float], min_warmup: int, repeats: int, images: int) -> dict:
    """One side's timing from consecutive repeats, its warm-up found by ``settle``."""
    timed, warm, settled = settle(rates, min_warmup, repeats)
    return timed_summary(rates, timed, warm, settled, images)


def timed_summary(rates, timed, warm: int, settled: bool, images: int) -> dict:
    """One side's timing from its chosen repeats ``timed`` of all its ``rates``."""
    median = statistics.median(timed)
    return {
        "images_per_s": round(median, 2),
        "spread": round((max(timed) - min(timed)) / median, 3),
        "warmup_repeats": warm,
        "settled": settled,
        "images_per_repeat": images,
        "timed": [round(v, 2) for v in timed],
        "all": [round(v, 2) for v in rates],
    }


def paired_ratios(bare: dict, pipeline: dict) -> list[float]:
    """Pipeline / bare images/s of each timed round, when both sides were timed on the same
    rounds (they take turns); empty otherwise."""
    same = bare["warmup_repeats"] == pipeline["warmup_repeats"]
    if not same or len(bare["timed"]) != len(pipeline["timed"]):
        return []
    return [p / b for p, b in zip(pipeline["timed"], bare["timed"], strict=True)]


def sanity(bare: dict, pipeline: dict) -> tuple[str, list[str]]:
    """("ok" | "suspect", reasons) for an efficiency: what a reader should not trust, and why."""
    reasons = []
    for side, t in (("bare", bare), ("pipeline", pipeline)):
        if not t["settled"]:
            reasons.append(
                f"{side} timing never settled in {len(t['all'])} repeats "
                "(compilation or warm-up may be inside)"
            )
        if t["spread"] > MAX_SPREAD:
            reason = f"{side} repeats spread {t['spread']:.0%} (a busy or throttled device?)"
            ratios = paired_ratios(bare, pipeline)
            if ratios:  # a change of pace that met both sides alike leaves the ratio steady
                spread = (max(ratios) - min(ratios)) / statistics.median(ratios)
                reason += f"; the same rounds' pipeline / bare ratios spread {spread:.0%}"
            reasons.append(reason)
    if bare["images_per_repeat"] != pipeline["images_per_repeat"]:
        reasons.append(
            f"unequal work: {bare['images_per_repeat']} images per bare repeat, "
            f"{pipeline['images_per_repeat']} per pipeline repeat"
        )
    efficiency = pipeline["images_per_s"] / bare["images_per_s"]
    low = min(pipeline["timed"]) / max(bare["timed"])
    high = max(pipeline["timed"]) / min(bare["timed"])
    lo, hi = EFFICIENCY_RANGE
    if lo <= efficiency <= hi:
        return ("suspect" if reasons else "ok"), reasons
    if reasons:
        reasons.append(f"efficiency {efficiency:.2f} outside {lo}-{hi}")
    elif low <= hi and high >= lo:
        reasons.append(
            f"efficiency {efficiency:.2f} outside {lo}-{hi}, but its repeats span "
            f"{low:.2f}-{high:.2f}: within the timing noise (time more steps a repeat)"
        )
    else:
        reasons.append(
            f"efficiency {efficiency:.2f} outside {lo}-{hi} with settled, steady timings: "
            + (
                "the pipeline is faster than the model alone, so they do not do the same work"
                if efficiency > hi
                else "work outside the model (batching, augmentation, host copies) dominates"
            )
        )
    return ("suspect" if reasons else "ok"), reasons
