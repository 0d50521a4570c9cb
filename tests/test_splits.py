import json

import numpy as np
import pytest

from common import splits
from common.datasets import load_fgnet

PERSONS = np.repeat([f"p{i:02d}" for i in range(20)], 3)


def _check_disjoint_and_complete(folds, people):
    tested = []
    for fold in folds:
        parts = [set(fold.train), set(fold.val), set(fold.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] == set(people)
        assert fold.val, "every fold needs validation people"
        tested += list(fold.test)
    assert sorted(tested) == sorted(people), "each person must be tested exactly once"


def test_lopo_folds():
    folds = splits.lopo_folds(PERSONS, val_fraction=0.1, seed=0)
    assert len(folds) == 20
    _check_disjoint_and_complete(folds, set(PERSONS))
    assert all(len(f.val) == 2 for f in folds)


def test_group_kfold_and_holdout():
    _check_disjoint_and_complete(splits.group_kfold(PERSONS, k=5), set(PERSONS))
    (fold,) = splits.holdout_split(PERSONS, test_fraction=0.25, val_fraction=0.2)
    assert len(fold.test) == 5 and len(fold.val) == 3 and len(fold.train) == 12


def test_validation_people_are_seeded():
    a = splits.lopo_folds(PERSONS, seed=1)
    assert a == splits.lopo_folds(PERSONS, seed=1)
    assert a != splits.lopo_folds(PERSONS, seed=2)


def test_fold_rejects_overlap():
    with pytest.raises(ValueError, match="both train and test"):
        splits.Fold("bad", ("a", "b"), ("c",), ("a",))


def test_fold_indices_select_images():
    fold = splits.lopo_folds(PERSONS)[0]
    idx = fold.indices(PERSONS)
    assert set(PERSONS[idx["test"]]) == set(fold.test)
    assert sum(len(v) for v in idx.values()) == len(PERSONS)


def test_save_load_roundtrip_and_tamper(tmp_path):
    folds = splits.group_kfold(PERSONS, k=4)
    path = tmp_path / "folds.json"
    digest = splits.save_folds(folds, path, meta={"dataset": "toy"})
    loaded, digest2, meta = splits.load_folds(path)
    assert loaded == folds and digest2 == digest and meta == {"dataset": "toy"}
    data = json.loads(path.read_text())
    data["folds"][0]["test"].append("intruder")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hash mismatch"):
        splits.load_folds(path)


def test_too_few_people():
    with pytest.raises(ValueError, match="at least 3 people"):
        splits.lopo_folds(["a", "b"])


@pytest.mark.fgnet
def test_lopo_on_real_fgnet(fgnet_dir, tmp_path):
    persons = np.array([r.person for r in load_fgnet(fgnet_dir, landmarks=False)])
    folds = splits.lopo_folds(persons)
    assert len(folds) == 82
    _check_disjoint_and_complete(folds, set(persons))
    digest = splits.save_folds(folds, tmp_path / "lopo.json")
    assert splits.load_folds(tmp_path / "lopo.json")[1] == digest


def test_official_validation_people_do_not_depend_on_the_other_data_sets():
    # Pretraining on set A and then training on A + B must not put among the second run's
    # validation people anyone the first run trained on.
    a = [f"a:{i}" for i in range(2000)]
    b = [f"b:{i}" for i in range(300)]
    test = a[:200]
    (first,) = splits.official_split(a, test, 0.1, 0)
    (second,) = splits.official_split(a + b, test, 0.1, 0)
    assert set(second.val) & set(a) == set(first.val)
    assert not set(second.val) & set(first.train)
    assert 150 < len(first.val) < 210  # about 10 % of the 1,800 non-test people
    assert set(second.val) & set(b)  # B's people are carved too
    (other_seed,) = splits.official_split(a, test, 0.1, 1)
    assert set(other_seed.val) != set(first.val)


def test_official_split_always_has_a_validation_person():
    (fold,) = splits.official_split(["p1", "p2", "p3"], ["p1"], 0.01, 0)
    assert len(fold.val) == 1 and len(fold.train) == 1


def test_a_final_split_trains_on_the_test_people_and_keeps_the_validation_people():
    people = [f"a:{i}" for i in range(500)]
    test = people[:100]
    (held_out,) = splits.official_split(people, test, 0.1, 0)
    (final,) = splits.official_split(people, test, 0.1, 0, train_on_test=True)
    assert final.val == held_out.val  # the held-out variant's validation figures compare
    assert set(final.train) == set(held_out.train) | set(test) and final.test == ()
    assert not set(final.train) & set(final.val)


def test_train_on_test_needs_an_official_protocol():
    from common.config import ProtocolConfig
    from common.prepare import build_folds

    with pytest.raises(ValueError, match="train_on_test"):
        build_folds(ProtocolConfig(kind="holdout", train_on_test=True), np.array(["p1", "p2"]))
