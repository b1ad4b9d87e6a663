"""Two `adapterflow run` processes at once on one home (SQLite MLflow store, artifact folder,
Prefect home): both complete, every unit is trained once and is complete, and neither marks the
other's live runs FAILED."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import mlflow
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_config
from tasks.reporting import comparison_table
from tasks.run_liveness import mark_abandoned_runs_failed
from tasks.tracking import KIND_TAG, Tracking
from flows.store import tracking_for


def _start(config_path, home):
    # Each process starts its temporary Prefect server on the same Prefect home (<home>/prefect).
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["ADAPTERFLOW_HOME"] = str(home)
    log = config_path.with_suffix(".log")  # a file, not a pipe nobody reads while both run
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config_path)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, log


def _running_runs(db) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _adapter_is_readable(tracking: Tracking, run_id: str, dst) -> bool:
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="adapter", dst_path=str(dst / run_id),
                                                 tracking_uri=tracking.uri)
    config = json.loads((dst / run_id / "adapter" / "adapter_config.json").read_text())
    return bool(config) and len(load_file(f"{folder}/adapter.safetensors")) > 0


def test_two_pipelines_on_one_home(tiny_config, tmp_path):
    first, home = tiny_config()
    cfg = yaml.safe_load(first.read_text())
    cfg["training"]["targets"]["learning_rate"] = 0.002  # same sources, different transfer units
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(cfg))

    processes, logs = zip(_start(first, home), _start(second, home))
    tracking = tracking_for(load_config(first))
    checked_while_running = False
    while any(p.poll() is None for p in processes):
        # A third process on the same host looks for abandoned runs: the live ones are not.
        if not checked_while_running and _running_runs(home / "mlflow.db") >= 1:
            assert mark_abandoned_runs_failed(tracking) == 0
            checked_while_running = True
        time.sleep(0.2)
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log.read_text()[-3000:]
    assert checked_while_running

    runs = tracking.client().search_runs([tracking.experiment_id()], max_results=1000)
    assert Counter(r.info.status for r in runs) == Counter({"FINISHED": len(runs)})
    pipelines = [r for r in runs if r.data.tags[KIND_TAG] == "pipeline"]
    assert len(pipelines) == 2
    assert max(r.info.start_time for r in pipelines) < min(r.info.end_time for r in pipelines), "did not overlap"
    units = [r for r in runs if r.data.tags[KIND_TAG] == "unit"]
    trained = {r.info.run_id: r for r in units if r.data.tags.get("reused") != "true"}
    keys = Counter(r.data.tags["unit_key"] for r in trained.values() if r.data.tags["stage"] != "evaluate")
    assert set(keys.values()) == {1}, f"trained more than once: {[k for k, n in keys.items() if n > 1]}"
    for run in trained.values():
        if tracking.client().list_artifacts(run.info.run_id, "adapter"):
            assert _adapter_is_readable(tracking, run.info.run_id, tmp_path / "downloads")
    evaluations = {}  # both pipelines may evaluate a shared source adapter at once: same scores
    for run in trained.values():
        if run.data.tags["stage"] == "evaluate":
            assert evaluations.setdefault(run.data.tags["unit_key"], run.data.metrics) == run.data.metrics
    reused = [r for r in units if r.data.tags.get("reused") == "true"]
    assert all(r.data.tags["artifact_run_id"] in trained for r in reused)

    for pipeline in pipelines:  # each run's report is complete: 2 sources, 3 transfer methods
        table = comparison_table(tracking, pipeline.info.run_id)
        assert sorted(table["method"]) == ["adapter", "adapter", "adapter", "average", "scalearn"]
    result = CliRunner().invoke(app, ["report", "--config", str(first), "--format", "csv"])
    # stdout is the CSV alone (a header and the five units); the run it reports goes to stderr
    assert result.exit_code == 0 and result.stdout.count("\n") == 6, result.output
    assert "of experiment 'flowtest'" in result.stderr
