"""`adapterflow report` reads cleanly in every format: the run named first, no `nan`, whole numbers
with thousands separators (plain integers in CSV), reuse in a column of its own, and a pointer to
`adapterflow up` for the UIs. The store is written by hand: no pipeline runs here."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from flows.config import load_config
from tasks.tracking import UnitRun, end_run, record_reuse, start_pipeline_run
from flows.store import tracking_for
from tests.helpers.pipeline import invoke


@pytest.fixture(scope="module")
def report_store(tmp_path_factory):
    """(config path, pipeline run id): a run with a trained ScaLearn fit and a reused source adapter
    that logged fewer metrics (so some cells have no value)."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "report.yaml"
    path.write_text(f"name: reporting\nhome: {folder / 'home'}\n")
    cfg = load_config(path)
    tracking = tracking_for(cfg)
    earlier = start_pipeline_run(tracking, cfg.model_dump(mode="json"), "pipeline earlier")
    with UnitRun(tracking, earlier, "demo_sentiment/adapter seed 1 (sources)", stage="sources", task="demo_sentiment",
                 method="adapter", unit_key="key-source") as source:
        source.log_params({"seed": 1})
        source.log_metrics({"test_accuracy": 0.8125, "trainable_params": 1234567})
    end_run(tracking, earlier)
    parent = start_pipeline_run(tracking, cfg.model_dump(mode="json"), "pipeline latest")
    record_reuse(tracking, parent, tracking.client().get_run(source.run_id), "demo_sentiment/adapter seed 1 (sources)",
                 stage="sources", task="demo_sentiment", method="adapter", unit_key="key-source")
    with UnitRun(tracking, parent, "demo_lowres/scalearn seed 1 (transfer)", stage="transfer", task="demo_lowres",
                 method="scalearn", unit_key="key-fit") as fit:
        fit.log_params({"seed": 1})
        fit.log_metrics({"test_accuracy": 0.6625, "validation_accuracy": 0.7, "trainable_params": 113040,
                         "head_params": 770, "wall_time_s": 12.34, "peak_memory_mb": 2345.6})
    end_run(tracking, parent)
    return path, parent


@pytest.fixture(autouse=True)
def _own_store(monkeypatch):
    monkeypatch.delenv("ADAPTERFLOW_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _header(run_id: str) -> str:
    return f"adapterflow — run 'pipeline latest' ({run_id}) of experiment 'reporting'"


def test_markdown_names_the_run_and_has_readable_cells(report_store):
    path, run_id = report_store
    code, stdout, stderr = invoke("report", "--config", path, "--format", "markdown")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == f"**{_header(run_id)}**"
    header = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert header[:4] == ["stage", "task", "method", "seed"] and header[-1] == "reused"
    rows = {cells[2]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:])}
    assert rows["scalearn"][header.index("trainable_params")] == "113,040"
    assert rows["scalearn"][header.index("test_accuracy")] == "0.6625"
    assert rows["scalearn"][header.index("peak_memory_mb")] == "2,346"
    assert rows["adapter"][header.index("trainable_params")] == "1,234,567"
    assert rows["adapter"][header.index("validation_accuracy")] == "-"
    assert (rows["adapter"][-1], rows["scalearn"][-1]) == ("yes", "no")
    assert "nan" not in stdout and "e+0" not in stdout and "(reused)" not in stdout


def test_csv_is_one_table_with_integers_and_empty_cells(report_store):
    path, run_id = report_store
    code, stdout, stderr = invoke("report", "--config", path, "--format", "csv")
    assert code == 0, stderr
    assert _header(run_id) in stderr  # on stderr: stdout stays one CSV table
    table = pd.read_csv(io.StringIO(stdout)).set_index("method")
    assert "trainable_params,head_params" in stdout.splitlines()[0] and ",113040," in stdout
    assert table.loc["scalearn", "trainable_params"] == 113040 and table.loc["adapter", "reused"]
    assert pd.isna(table.loc["adapter", "validation_accuracy"]) and "nan" not in stdout


def test_the_table_names_the_run_shows_reuse_apart_and_points_at_up(report_store):
    path, run_id = report_store
    code, stdout, stderr = invoke("report", "--config", path)
    assert code == 0, stderr
    assert _header(run_id) in " ".join(stdout.split())
    assert "113,040 (770)" in stdout and "1,234,567 (-)" in stdout and "2,346" in stdout
    assert "nan" not in stdout and "(reused)" not in stdout and "reused" in stdout
    assert f"`.venv/bin/adapterflow up {path}`" in stdout and "mlflow ui" not in stdout
