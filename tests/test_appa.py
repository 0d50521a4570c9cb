"""The APPA reader: the official label files, crops missing from disk, duplicates as one person."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import datasets
from common.datasets import DataWarning


@pytest.fixture
def fake_appa(tmp_path):
    """The real layout in miniature: label files listing a missing crop, a byte-identical pair
    across the split, and a near-duplicate pair named by the manifest."""
    root = tmp_path / "appa"
    (root / "gt").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for folder, names in {
        "train_1": ["000001", "000002"],
        "train_2": ["000003"],
        "valid": ["000010", "000011", "000012"],
    }.items():
        (root / "images" / folder).mkdir(parents=True)
        for name in names:
            pixels = rng.integers(0, 255, (24, 24, 3), np.uint8)
            Image.fromarray(pixels).save(root / "images" / folder / f"{name}.jpg")
    # 000012 is a byte copy of train's 000001: the same person, so it stays on one side
    shutil.copy(root / "images/train_1/000001.jpg", root / "images/valid/000012.jpg")
    (root / "gt" / "train_gt.csv").write_text(
        "image,mean,stdv\n000001.jpg,5.4,1.1\n000002.jpg,40.6,4.0\n000003.jpg,70.2,6.2\n"
        "000004.jpg,30.0,3.0\n"  # listed, no crop on disk
    )
    (root / "gt" / "valid_gt.csv").write_text(
        "image,mean,stdv\n000010.jpg,22.5,2.5\n000011.jpg,23.0,2.0\n000012.jpg,5.0,1.0\n"
        "000013.jpg,50.0,5.0\n000014.jpg,60.0,5.0\n"  # two listed without a crop
    )
    (root / "manifest.csv").write_text(
        "file,image_id,split,near_dup_group,dup_group\n"
        "images/valid/000010.jpg,000010.jpg,valid,3,\nimages/valid/000011.jpg,000011.jpg,valid,3,\n"
    )
    return root


def test_reader_counts_missing_crops_and_groups_duplicates(fake_appa):
    with pytest.warns(DataWarning, match="without a crop on disk: 1 of train, 2 of valid"):
        records = datasets.dataset("appa").read(str(fake_appa))
    by_name = {r.name: r for r in records}
    assert sorted(by_name) == [
        "000001.jpg",
        "000002.jpg",
        "000003.jpg",
        "000010.jpg",
        "000011.jpg",
        "000012.jpg",
    ]
    assert by_name["000002.jpg"].age == 41.0 and by_name["000002.jpg"].age_std == 4.0
    assert by_name["000012.jpg"].person == by_name["000001.jpg"].person  # byte-identical
    assert by_name["000010.jpg"].person == by_name["000011.jpg"].person  # the manifest's group
    assert len({r.person for r in records}) == 4


def test_official_split_keeps_each_person_on_one_side(fake_appa):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        split = datasets.appa_split(fake_appa)
        test = datasets.dataset("appa").official_test(str(fake_appa))
    assert test == split["valid"]
    # the byte copy in valid carries train's person: that person is a test person, never both
    from common.splits import official_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        records = datasets.dataset("appa").read(str(fake_appa))
    persons = np.array([r.person for r in records])
    (fold,) = official_split(persons, test, 0.34, 0)
    parts = fold.indices(persons)
    assert not set(persons[parts["test"]]) & set(persons[parts["train"]])


def test_missing_folder_says_what_to_set(monkeypatch):
    monkeypatch.delenv("AGEZOO_APPA_DIR", raising=False)
    with pytest.raises(datasets.DatasetNotFoundError, match="AGEZOO_APPA_DIR"):
        datasets.dataset("appa").read(None)


def test_real_copy_counts():
    root = os.environ.get("AGEZOO_APPA_DIR")
    if not root or not Path(root, "gt").is_dir():
        pytest.skip("AGEZOO_APPA_DIR is not set: the real APPA copy is needed")
    with pytest.warns(DataWarning, match="307 of train, 94 of valid"):
        records = datasets.dataset("appa").read(root)
    assert len(records) == 5206
    assert len({r.person for r in records}) == 5204  # two near-duplicate pairs


def test_vote_stds_travel_with_the_cached_faces(fake_appa, tmp_path):
    from common.cache import cached_faces, concat_faces
    from common.faces import AlignSpec

    with pytest.warns(DataWarning):
        records = datasets.dataset("appa").read(str(fake_appa))
    faces = cached_faces(records, AlignSpec(size=16), "appa", cache_dir=tmp_path, progress=False)
    by_name = dict(zip(faces.names, faces.age_stds, strict=True))
    assert by_name["000002.jpg"] == pytest.approx(4.0) and by_name["000010.jpg"] == 2.5
    again = cached_faces(records, AlignSpec(size=16), "appa", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.age_stds, faces.age_stds)  # read back from the cache
    both = concat_faces({"appa": faces, "other": faces.subset(np.array([0, 1]))})
    assert len(both.age_stds) == len(faces) + 2
    np.testing.assert_array_equal(both.age_stds[-2:], faces.age_stds[:2])
    plain = type(faces)(faces.images, faces.ages, faces.persons, faces.names, faces.methods)
    assert np.isnan(plain.age_stds).all()  # a set without label spreads
