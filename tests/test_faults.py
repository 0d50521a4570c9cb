"""The fault benchmark's fast parts on a small schedule: a killed cache build, two builders at
once and a full disk (``benchmarks/faults.py`` runs the rest: training, shards, release)."""

import numpy as np
import pytest

from benchmarks import fault_files, fault_kills


@pytest.mark.slow
def test_killed_cache_builds_and_two_builders_at_once_lose_nothing(tmp_path):
    rows = fault_kills.part_cache(tmp_path, np.random.default_rng(1), kills=2)
    rows.append(fault_files.race_cache(tmp_path))
    assert len(rows) == 3
    assert all(r["survived"] and not r["lost"] and not r["hung"] for r in rows), rows


def test_a_full_disk_names_the_path_and_leaves_no_partial_file(tmp_path):
    rows = fault_files.part_disk(tmp_path, None, 0)
    if rows[0].get("skipped"):
        pytest.skip(rows[0]["fault"])
    assert [r["path"] for r in rows] == ["cache write", "checkpoint write", "release write"]
    for r in rows:
        assert r["survived"], r
        assert "No space left" in r["message"] or "MB free there" in r["message"], r
        assert not r["partial_files"]
