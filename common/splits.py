"""Person-disjoint dataset splits, saved as a hashed JSON fold file.

Every fold has train / validation / test person lists; the validation people are drawn
deterministically from that fold's training people, so model selection never sees the test
people. Both frameworks read the same fold file, and every result records its hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """One split of the people: ``train``, ``val`` and ``test`` are sorted person-id tuples."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self):
        parts = {"train": set(self.train), "val": set(self.val), "test": set(self.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = parts[a] & parts[b]
            if shared:
                raise ValueError(
                    f"fold {self.name}: people {sorted(shared)[:5]} are in both {a} and {b}"
                )

    def indices(self, persons: np.ndarray) -> dict[str, np.ndarray]:
        """Image indices of each part, given the per-image person ids of a data set."""
        persons = np.asarray(persons).astype(str)
        return {
            part: np.flatnonzero(np.isin(persons, np.array(getattr(self, part), dtype=str)))
            for part in ("train", "val", "test")
        }


def _unique_people(persons) -> list[str]:
    people = sorted({str(p) for p in persons})
    if len(people) < 3:
        raise ValueError(f"need at least 3 people to split, got {len(people)}")
    return people


def _carve_val(train: list[str], val_fraction: float, rng: np.random.Generator):
    n_val = max(1, int(round(val_fraction * len(train)))) if val_fraction > 0 else 0
    if n_val >= len(train):
        raise ValueError(f"val_fraction={val_fraction} leaves no training people")
    picked = set(rng.choice(len(train), size=n_val, replace=False).tolist())
    val = tuple(p for i, p in enumerate(train) if i in picked)
    rest = tuple(p for i, p in enumerate(train) if i not in picked)
    return rest, val


def _fold_rng(seed: int, name: str) -> np.random.Generator:
    # Seed per fold name, so a fold's validation people do not depend on the other folds.
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def lopo_folds(persons, val_fraction: float = 0.1, seed: int = 0) -> list[Fold]:
    """Leave-one-person-out: one fold per person, who is that fold's only test person."""
    people = _unique_people(persons)
    folds = []
    for person in people:
        name = f"lopo-{person}"
        train, val = _carve_val(
            [p for p in people if p != person], val_fraction, _fold_rng(seed, name)
        )
        folds.append(Fold(name, train, val, (person,)))
    return folds


def group_kfold(persons, k: int = 5, val_fraction: float = 0.1, seed: int = 0) -> list[Fold]:
    """K folds of (shuffled) people; each person is tested exactly once."""
    people = _unique_people(persons)
    if not 2 <= k <= len(people):
        raise ValueError(f"k={k} must be between 2 and the number of people ({len(people)})")
    order = np.random.default_rng(seed).permutation(len(people))
    groups = np.array_split(order, k)
    folds = []
    for i, group in enumerate(groups):
        test = sorted(people[j] for j in group)
        name = f"kfold{k}-{i}"
        rest = [p for p in people if p not in set(test)]
        train, val = _carve_val(rest, val_fraction, _fold_rng(seed, name))
        folds.append(Fold(name, train, val, tuple(test)))
    return folds


def holdout_split(
    persons, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0
) -> list[Fold]:
    """A single train / validation / test split of the people."""
    people = _unique_people(persons)
    n_test = int(round(test_fraction * len(people)))
    n_test = max(1, n_test) if test_fraction > 0 else 0  # 0: everyone trains (a final model)
    rng = np.random.default_rng(seed)
    test_idx = set(rng.choice(len(people), size=n_test, replace=False).tolist())
    test = tuple(p for i, p in enumerate(people) if i in test_idx)
    rest = [p for i, p in enumerate(people) if i not in test_idx]
    train, val = _carve_val(rest, val_fraction, _fold_rng(seed, "holdout"))
    return [Fold("holdout", train, val, test)]


def official_split(
    persons, test_people, val_fraction: float = 0.1, seed: int = 0, train_on_test: bool = False
) -> list[Fold]:
    """A data set's own test list; validation people carved (seeded) from everyone else.

    ``train_on_test`` makes a final model: the test people join the training people and no
    one is tested, while the validation people stay exactly those of the held-out split, so
    that its validation figures compare with a held-out run of the same recipe.
    """
    people = _unique_people(persons)
    test_set = {str(p) for p in test_people}
    test = tuple(p for p in people if p in test_set)
    rest = [p for p in people if p not in test_set]
    if not test or not rest:
        raise ValueError(
            f"the official test list leaves {len(test)} test / {len(rest)} other people"
        )
    train, val = _carve_val_by_person(rest, val_fraction, seed)
    if train_on_test:
        trained = set(train) | test_set
        return [Fold("official+test", tuple(p for p in people if p in trained), val, ())]
    return [Fold("official", train, val, test)]


def _carve_val_by_person(train: list[str], val_fraction: float, seed: int):
    """Validation people of an official split, each chosen by a hash of its own id alone: a
    person is a validation person in every union of data sets it belongs to. A model trained on
    a union (the released model, from weights pretrained on part of it) then never meets, among
    its validation people, someone its starting weights were trained on."""
    if val_fraction <= 0:
        return tuple(train), ()

    def u(person: str) -> float:
        digest = hashlib.sha256(f"{seed}:official:{person}".encode()).digest()
        return int.from_bytes(digest[:8], "little") / 2**64

    val = {p for p in train if u(p) < val_fraction} or {min(train, key=u)}
    if len(val) >= len(train):
        raise ValueError(f"val_fraction={val_fraction} leaves no training people")
    return tuple(p for p in train if p not in val), tuple(p for p in train if p in val)


def fixed_holdout(train, val, test) -> list[Fold]:
    """A split a data set defines itself (e.g. All-Age-Faces' lists)."""
    return [Fold("holdout", tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)))]


def _payload(folds: list[Fold], meta: dict) -> dict:
    return {
        "format": FORMAT_VERSION,
        "meta": meta,
        "folds": [
            {"name": f.name, "train": list(f.train), "val": list(f.val), "test": list(f.test)}
            for f in folds
        ],
    }


def folds_hash(folds: list[Fold]) -> str:
    """sha256 of the folds alone (not the metadata), hex."""
    body = json.dumps(_payload(folds, {})["folds"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def save_folds(folds: list[Fold], path: str | Path, meta: dict | None = None) -> str:
    """Writes the fold file atomically and returns its hash."""
    path = Path(path)
    data = _payload(folds, meta or {})
    data["sha256"] = folds_hash(folds)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
    return data["sha256"]


def load_folds(path: str | Path) -> tuple[list[Fold], str, dict]:
    """Reads a fold file, checking its hash; returns (folds, hash, meta)."""
    path = Path(path)
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown fold-file format {data.get('format')!r}")
    folds = [
        Fold(f["name"], tuple(f["train"]), tuple(f["val"]), tuple(f["test"])) for f in data["folds"]
    ]
    digest = folds_hash(folds)
    if digest != data.get("sha256"):
        raise ValueError(f"{path}: fold hash mismatch (file edited by hand?); rebuild it")
    return folds, digest, data.get("meta", {})
