"""The B1 low-resource tables: gains carry their interval, and the findings say what it allows."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers.benchmarks import load_script


@pytest.fixture(scope="module")
def glue_lowres():
    return load_script("glue_lowres")


def _results() -> pd.DataFrame:
    common = {"target": "rte", "k": 32, "metric": "accuracy", "seeds": 3, "std": 0.02, "low": 0.5, "high": 0.6,
              "trainable_params": 10.0, "wall_time_s": 30.0, "recovery": False}
    return pd.DataFrame([
        {**common, "method": "adapter", "mean": 0.52},
        {**common, "method": "scalearn", "mean": 0.60, "gain": 0.08, "gain_low": 0.03, "gain_high": 0.12},
        {**common, "method": "adapterfusion", "mean": 0.45, "gain": -0.07, "gain_low": -0.10, "gain_high": -0.02},
        {**common, "method": "average", "mean": 0.53, "gain": 0.01, "gain_low": -0.02, "gain_high": 0.04},
    ])


def test_findings_name_what_the_intervals_allow(glue_lowres):
    [line] = glue_lowres.findings(_results())
    assert "rte, k = 32" in line
    assert "interval above 0: scalearn;" in line and "interval below 0: adapterfusion;" in line
    assert "average" not in line  # straddles 0: cannot be told apart


def test_the_table_marks_only_intervals_that_exclude_zero(glue_lowres):
    table = glue_lowres.results_table(_results())
    rows = {line.split(" | ")[2]: line for line in table.splitlines()[2:]}
    assert "+8.0 [+3.0, +12.0] **↑**" in rows["scalearn"]
    assert "-7.0 [-10.0, -2.0] **↓**" in rows["adapterfusion"]
    assert "**" not in rows["average"] and "–" in rows["adapter"].split(" | ")[5]
    assert list(rows) == ["scalearn", "average", "adapter", "adapterfusion"]  # best first


def test_the_training_loss_table_shows_each_round(glue_lowres):
    results = _results()
    results["train_loss_by_round"] = [[0.7, 0.5], [0.09, 5e-6], None, [0.69, 0.68]]
    lines = glue_lowres.train_loss_table(results).splitlines()
    assert lines[0] == "| target | k | method | round 1 | round 2 |"
    rows = {line.split(" | ")[2]: line for line in lines[2:]}
    assert rows["scalearn"].endswith("| 0.09 | 5e-06 |")
    assert "adapterfusion" not in rows  # nothing recorded: no row rather than a row of blanks
    assert glue_lowres.train_loss_table(_results()) == "Not recorded."


def test_a_variant_without_its_benchmarks_md_block_stops_before_training(glue_lowres, tmp_path, monkeypatch):
    import benchmarks.publish as publish
    from peft_core.errors import AdapterflowError

    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("<!-- glue-lowres-cpu:start -->\n<!-- glue-lowres-cpu:end -->\n")
    monkeypatch.setattr(publish, "BENCHMARKS_MD", markdown)
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path / "home"))
    with pytest.raises(AdapterflowError, match="glue-lowres-cpu-untried:start"):
        glue_lowres.run("cpu", None, report_only=False, variant="untried")
    assert not (tmp_path / "home").exists()  # no store opened, nothing trained


def test_a_variant_is_paired_with_the_profiles_own_fits_on_the_seeds_both_have(glue_lowres):
    labels = [0, 1] * 10
    right, wrong = labels, [1 - y for y in labels]
    predictions = {"v1": right, "v2": right, "p1": wrong, "p2": wrong, "p3": right, "a": right}

    def fits(runs: dict[tuple[str, int], str]) -> pd.DataFrame:
        return pd.DataFrame([{"task": "rte", "method": m, "seed": s, "artifact_run_id": run, "main_metric": "accuracy",
                              "test_accuracy": sum(p == y for p, y in zip(predictions[run], labels)) / len(labels)}
                             for (m, s), run in runs.items()])

    variant = fits({("scalearn", 1): "v1", ("scalearn", 2): "v2", ("adapter", 1): "a"})
    profile = fits({("scalearn", 1): "p1", ("scalearn", 2): "p2", ("scalearn", 3): "p3", ("adapter", 1): "a"})
    rows = glue_lowres.against_profile(variant, profile, 32, lambda run: {"predictions": predictions[run], "labels": labels})
    by_method = {r["method"]: r for r in rows}
    assert by_method["adapter"]["same"] and "gain" not in by_method["adapter"]
    scalearn = by_method["scalearn"]
    assert (scalearn["seeds"], scalearn["variant"], scalearn["profile"]) == (2, 1.0, 0.0)  # seed 3: the profile's alone
    assert scalearn["gain"] == pytest.approx(1.0) and scalearn["gain_low"] > 0
    table = glue_lowres.against_profile_table(rows)
    assert "| rte | 32 | adapter | accuracy 100.0 | 100.0 | the same fits |" in table
    assert "| rte | 32 | scalearn | accuracy 100.0 | 0.0 | +100.0 [" in table and "**↑**" in table
    assert "not in this store" in glue_lowres.against_profile_table([])
