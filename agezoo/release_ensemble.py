"""Two or more released files as one registered ensemble: their distributions averaged, one
temperature fitted on their shared validation people, and the choice of the default."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

import weights
from agezoo.cards import (
    ENSEMBLE_SUFFIX,
    clear_defaults,
    held_out_variant,
    member_name,
    released_dir,
    write_card,
    write_ensemble_card,
)
from agezoo.pretrain import default_run_dir, read_run
from common import results
from common.predictor import FLIP


def ensemble_name(archs: list[str]) -> str:
    return f"ensemble/{'+'.join(sorted(set(archs)))}/release"


def _released_card(dest: Path, run_dir: Path) -> dict:
    """The released card of this run: by its framework and architecture, checked to be this
    run's (same folds, same validation MAE)."""
    metrics, cfg = read_run(run_dir)
    name = member_name(metrics["framework"], cfg["model"]["name"])
    card = weights.released_cards(dest).get(name)
    if card is None:
        raise ValueError(f"{run_dir} is not released yet: python -m agezoo.release {run_dir}")
    if (card["fold_hash"], card["val_mae"]) != (metrics["fold_hash"], metrics["best_val_mae"]):
        raise ValueError(f"{name} in {dest} is not the release of {run_dir}; release it")
    return card


def validation_faces(run_dir: Path):
    """The validation people's aligned faces of a finished run (model selection's images)."""
    from common.config import load_config
    from common.prepare import load_faces

    cfg = load_config(str(run_dir / results.CONFIG))
    faces = load_faces(cfg.data)
    folds = json.loads((run_dir / results.FOLDS).read_text())["folds"]
    val = set(folds[cfg.fold]["val"])
    return faces.subset(np.flatnonzero([p in val for p in faces.persons]))


DEFAULT_CHOICES = ("member", "ensemble", "none")


def release_ensemble(
    run_dirs: list[str | Path],
    dest: str | Path | None = None,
    default: str = "member",
    heldout_of: str | None = None,
) -> dict:
    """Registers the released members of these runs as one ensemble (their distributions
    averaged, as ``agezoo predict --model A --model B`` does) with one temperature fitted on
    their shared validation people.

    ``default``: ``member`` makes agezoo predict's default the member with the lowest mean of
    its validation MAE and validation mean of the age bands (the ensemble runs every member: M
    times the model time, which on tight crops costs predict its lead over the pip peer; it is
    one ``--model`` away); ``ensemble`` makes the ensemble the default when it beats every
    member on validation MAE; ``none`` leaves the default alone.

    An ensemble of final runs (trained on their held-out people too) shows the held-out figures
    of its held-out variant: ``heldout_of``, by default the ensemble of that name it replaces
    (``agezoo.cards.held_out_variant``)."""
    if default not in DEFAULT_CHOICES:
        raise ValueError(f"default={default!r}; choose one of {DEFAULT_CHOICES}")
    from common.calibration import coverage, fit_temperature
    from common.ensemble import mean_distribution
    from common.losses import expected_age
    from common.metrics import band_mean as mean_of_bands
    from common.metrics import mae, mae_by_band

    def band_mean_of(pred, true):
        return mean_of_bands(mae_by_band(pred, true))

    from common.onnx_predictor import load_predictor

    dest = Path(dest or released_dir())
    runs = [Path(r) for r in run_dirs]
    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two released runs")
    cards = [_released_card(dest, r) for r in runs]
    if len({c["fold_hash"] for c in cards}) > 1:
        raise ValueError(
            "the members were validated on different people (fold hashes "
            f"{', '.join(c['fold_hash'][:12] for c in cards)}); an ensemble's temperature needs "
            "validation people that no member trained on"
        )
    registered = ensemble_name([c["arch"] for c in cards])
    final = bool(cards[0].get("trained_on_test"))
    replaced = weights.released_ensembles(dest).get(registered)
    variant = held_out_variant(replaced, heldout_of) if final else None
    faces = validation_faces(runs[0])
    plain, mirrored = [], []
    for card in cards:
        path = dest / card["weights_file"]
        weights.check_sha256(path, card["sha256"])
        predictor = load_predictor(path)
        predictor.flip = False  # each pass kept, combined below as predict combines them
        plain.append(predictor.outputs(faces.images))
        mirrored.append(predictor.outputs(np.ascontiguousarray(faces.images[:, :, ::-1])))
    ages = faces.ages

    def outputs(flip: bool) -> tuple[list[np.ndarray], np.ndarray]:
        """Each member's and the ensemble's outputs as agezoo predict combines them: the
        ensemble's log-distribution of each pass, the passes averaged with the flip."""
        if not flip:
            return plain, mean_distribution(plain)
        members = [(a + b) / 2 for a, b in zip(plain, mirrored, strict=True)]
        return members, (mean_distribution(plain) + mean_distribution(mirrored)) / 2

    def figures(members: list[np.ndarray], joined: np.ndarray) -> dict:
        return {
            "member_mae": {
                c["name"]: round(mae(expected_age(m), ages), 4)
                for c, m in zip(cards, members, strict=True)
            },
            "mae": round(mae(expected_age(joined), ages), 4),
            "band_mean": {  # the mean of the age bands' MAE, as the held-out figures report it
                **{
                    c["name"]: round(band_mean_of(expected_age(m), ages), 4)
                    for c, m in zip(cards, members, strict=True)
                },
                "ensemble": round(band_mean_of(expected_age(joined), ages), 4),
            },
        }

    # the headline figures and the temperature: agezoo predict's default path (FLIP)
    members_out, logits = outputs(FLIP)
    main, other = figures(members_out, logits), figures(*outputs(not FLIP))
    member_mae, ens_mae, band_mean = main["member_mae"], main["mae"], main["band_mean"]
    temperature = fit_temperature(logits, ages)
    better = ens_mae < min(member_mae.values())
    # the two headline figures, overall MAE and the mean of the age bands, weighed equally
    score = {name: (member_mae[name] + band_mean[name]) / 2 for name in member_mae}
    best_member = min(score, key=score.get)
    members = [c["name"] for c in cards]
    kind = "release-all" if final else "release"
    identity = json.dumps({"members": [c["sha256"] for c in cards], "t": temperature})
    card = {
        "name": registered,
        "default": default == "ensemble" and better,
        "framework": "ensemble",
        "members": members,
        "member_sha256": [c["sha256"] for c in cards],
        "trained_in": [c["trained_in"] for c in cards],
        "temperature": temperature,
        "val": {
            "images": len(ages),
            "people": len(set(faces.persons)),
            "member_mae": member_mae,
            "mae": ens_mae,
            "beats_every_member": better,
            "band_mean": band_mean,
            "default_score": {k: round(v, 4) for k, v in score.items()},
            "flip": FLIP,
            "with_flip" if not FLIP else "without_flip": other,
            "coverage_before": coverage(logits, ages),
            "coverage_after": coverage(logits, ages, temperature),
        },
        "fold_hash": cards[0]["fold_hash"],
        "people": cards[0]["people"],
        "data": cards[0]["data"],
        "terms": cards[0]["terms"],
        "never_score_on": cards[0]["never_score_on"],
        "trained_on_test": final,
        "heldout_of": variant,
        "sha256": hashlib.sha256(identity.encode()).hexdigest(),
        "command": "python -m agezoo.release --ensemble "  # the members' default run folders
        + " ".join(default_run_dir(kind, c["trained_in"], c["arch"]) for c in cards)
        + (f" --heldout-of {variant[:12]}" if variant else ""),
        "date": time.strftime("%Y-%m-%d"),
        "licence": cards[0]["licence"],
    }
    for path in dest.glob("*" + ENSEMBLE_SUFFIX):  # one ensemble per name
        if json.loads(path.read_text())["name"] == card["name"]:
            for old in dest.glob(path.name.removesuffix(ENSEMBLE_SUFFIX) + ".*"):
                old.unlink()
    if card["default"] or default == "member":
        clear_defaults(dest)
    write_ensemble_card(dest, card)
    if default == "member":
        write_card(dest, {**weights.released_cards(dest)[best_member], "default": True})
    card["default_model"] = (
        card["name"] if card["default"] else (best_member if default == "member" else None)
    )
    return card
