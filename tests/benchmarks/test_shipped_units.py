"""The units shipped in benchmarks/sources/glue-lowres/ are B1's one-time units under the keys today's
code computes for them: a change that bumps a compute version (or a data digest) must re-export them
in the same change (`benchmarks/shipped_units.py --export`), or a new user's import saves nothing."""

from __future__ import annotations

import pytest

from flows.config import load_config
from tests.helpers.benchmarks import GLUE_DIR, load_script

pytestmark = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"no real GLUE data at {GLUE_DIR}")


def test_the_shipped_units_are_the_one_time_units_of_today():
    shipped_units = load_script("shipped_units")
    expected = shipped_units.expected_units(load_config(shipped_units.CONFIG))
    assert len(expected) == 17  # 8 source adapters, 8 prompt adapters, the joint HyperFormer++
    shipped = set(shipped_units.shipped_keys())
    assert {expected[k] for k in set(expected) - shipped} == set(), "not shipped at today's keys: re-export"
    assert shipped <= set(expected), f"shipped units no code computes: {sorted(shipped - set(expected))}"
