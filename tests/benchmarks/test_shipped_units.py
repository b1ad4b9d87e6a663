"""The units shipped in benchmarks/sources/glue-lowres/ are B1's one-time units under the keys today's
code computes for them: a change that bumps a compute version (or a data digest) must re-export them
in the same change (`benchmarks/shipped_units.py --export`), or a new user's import saves nothing."""

from __future__ import annotations

import pytest

from flows.config import load_config
from tests.helpers.benchmarks import GLUE_DIR, load_script

pytestmark = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"no real GLUE data at {GLUE_DIR}")


# The shipped copy predates the keys of 7118701 (the data digest covers the task spec) and lacks the
# prompt adapters and the joint model; the one-time units are training for a re-export (issue 22).
# Strict: once `benchmarks/shipped_units.py --export` has run, this passes and the mark must go.
@pytest.mark.xfail(strict=True, reason="benchmarks/sources/glue-lowres predates today's unit keys; re-export pending")
def test_the_shipped_units_are_the_one_time_units_of_today():
    shipped_units = load_script("shipped_units")
    expected = shipped_units.expected_units(load_config(shipped_units.CONFIG))
    assert len(expected) == 17  # 8 source adapters, 8 prompt adapters, the joint HyperFormer++
    shipped = set(shipped_units.shipped_keys())
    assert {expected[k] for k in set(expected) - shipped} == set(), "not shipped at today's keys: re-export"
    assert shipped <= set(expected), f"shipped units no code computes: {sorted(shipped - set(expected))}"
