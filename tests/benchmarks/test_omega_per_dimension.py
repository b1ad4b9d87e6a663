"""The ω-per-dimension statistics of benchmarks/omega_per_dimension.py, on a weights.json written by hand."""

from __future__ import annotations

import pytest

from tests.helpers.benchmarks import load_script


@pytest.fixture(scope="module")
def omega():
    return load_script("omega_per_dimension")


def test_moved_share_spread_and_the_own_adapter(omega):
    # K = 2 sources, start 2/K = 1.0; two sites, d = 2. The own adapter (rte) ends at 1.5 on every entry.
    report = {"sources": ["mnli", "rte"], "sites": ["0.ffn", "1.ffn"], "weights": [[1.1, 1.5], [0.9, 1.5]],
              "details": {"0.ffn": {"omega": [[1.0, 1.2], [1.5, 1.5]]}, "1.ffn": {"omega": [[1.0, 0.8], [1.5, 1.5]]}}}
    got = omega.omega_summary(report, "rte")
    assert got["start"] == 1.0
    assert got["moved_share"] == pytest.approx(6 / 8)  # mnli's 1.2 and 0.8 and all four of rte's
    assert got["dimension_std"] == pytest.approx((0.1 + 0.0 + 0.1 + 0.0) / 4)
    assert got["own_mean"] == pytest.approx(1.5) and got["others_mean_range"] == [pytest.approx(1.0)] * 2


def test_uniform_variants_have_no_spread(omega):
    report = {"sources": ["mnli", "qnli", "rte"], "sites": ["0.ffn"], "weights": [[0.9, 0.6, 0.7]], "details": {"0.ffn": {}}}
    got = omega.omega_summary(report, "stsb")  # a target without its own adapter among the sources
    assert got["dimension_std"] is None and got["own_mean"] is None
    assert got["moved_share"] == pytest.approx(1 / 3)  # only 0.9 is more than 0.1 from 2/3
