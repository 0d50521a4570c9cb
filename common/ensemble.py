"""Several age models as one predictor: their age distributions averaged, face by face.

Example (two trained runs, possibly from the two frameworks)::

    from agezoo.backends import load_predictor
    both = ensemble([load_predictor("runs/torch-..."), load_predictor("runs/keras-...")])
    both.estimate(faces)["age"]  # the mean of the members' expectations

The members must crop faces alike (same crop size and margin) and predict a distribution over
the same ages. The ensemble's output is the log of the mean of the members' uncalibrated
distributions, so its age is the mean of their ages, as for one model the age is its own
distribution's expectation. Its spread is widened by one temperature: the one given (fitted on
validation people for a released ensemble), else the mean of the members' temperatures.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from common.losses import loss_spec
from common.predictor import Predictor


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def mean_distribution(logits: list[np.ndarray]) -> np.ndarray:
    """The log of the mean of the members' softmax distributions: (N, K) from M × (N, K)."""
    logp = np.stack([_log_softmax(z) for z in logits])
    peak = logp.max(axis=0)  # computed stably
    return peak + np.log(np.exp(logp - peak).mean(axis=0))


def ensemble(members: list[Predictor], temperature: float | None = None) -> Predictor:
    """One predictor over several; ``ValueError`` naming what the members do not share."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
    first = members[0].card
    for m in members:
        card = m.card
        if not loss_spec(card.loss).distribution:
            raise ValueError(f"{card.source}: an {card.loss} model has no distribution to average")
        if (card.size, card.margin, card.num_classes) != (
            first.size,
            first.margin,
            first.num_classes,
        ):
            raise ValueError(
                f"{card.source}: crop {card.size} px, margin {card.margin}, "
                f"{card.num_classes} ages; {first.source}: {first.size} px, {first.margin}, "
                f"{first.num_classes}. Members of an ensemble must crop alike and predict the "
                "same ages"
            )
    if temperature is None:
        temperature = float(np.mean([m.card.temperature for m in members]))
    forwards = [m.forward for m in members]

    def forward(images: np.ndarray) -> np.ndarray:
        return mean_distribution([f(images) for f in forwards])

    card = dataclasses.replace(
        first,
        framework="ensemble",
        arch="+".join(f"{m.card.framework}/{m.card.arch}" for m in members),
        temperature=temperature,
        calibration=None,
        members=len(members),
        source=" + ".join(m.card.source for m in members),
    )
    return Predictor(card, forward, flip=members[0].flip, batch_size=members[0].batch_size)
