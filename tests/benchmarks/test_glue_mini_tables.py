"""The B1 result tables: seeds are averaged with their spread, and orderings compare to the papers."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers.benchmarks import load_script


@pytest.fixture(scope="module")
def glue_mini():
    return load_script("glue_mini")


def _table() -> pd.DataFrame:
    rows = []
    for seed, (adapter, scalearn) in enumerate([(0.50, 0.60), (0.54, 0.62)]):
        for method, score in (("adapter", adapter), ("scalearn", scalearn)):
            rows.append({"stage": "transfer", "task": "rte", "method": method, "test_accuracy": score,
                         "validation_accuracy": score, "trainable_params": 10.0, "head_params": 2.0,
                         "wall_time_s": 5.0 + seed, "peak_memory_mb": 100.0, "reused": False, "run_id": f"r{seed}"})
    rows.append({"stage": "sources", "task": "rte", "method": "adapter", "test_accuracy": 0.9, "run_id": "s"})
    return pd.DataFrame(rows)


def test_seeds_are_averaged_with_their_spread(glue_mini):
    results = glue_mini.target_results(_table(), ["rte"]).set_index("method")
    assert results.loc["scalearn", "test_accuracy"] == pytest.approx(0.61)
    assert results.loc["scalearn", "test_accuracy_std"] == pytest.approx(0.01414, abs=1e-4)
    assert results.loc["adapter", "seeds"] == 2  # the sources-stage row is not a target result
    assert results.loc["adapter", "wall_time_s"] == pytest.approx(5.5)

    table = glue_mini.results_table(results.reset_index(), ["rte"])
    assert "accuracy 61.00 ± 1.41" in table and "| +9.00 |" in table and "| 82.06 |" in table


def test_ordering_names_methods_below_the_adapter(glue_mini):
    results = glue_mini.target_results(_table(), ["rte"])
    results.loc[results["method"] == "scalearn", "test_accuracy"] = 0.4
    (line,) = glue_mini.ordering_findings(results, ["rte"])
    assert "ours adapter > scalearn" in line and "papers scalearn > adapter" in line
    assert line.endswith("below the no-transfer adapter: scalearn.")
