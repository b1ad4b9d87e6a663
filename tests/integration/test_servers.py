"""Production set-up end to end, with real processes on free loopback ports: `adapterflow up`
starts the Prefect and MLflow servers; `adapterflow serve` serves the deployments and runs one;
`prefect deploy` registers deployments/prefect.yaml on a process pool; a real worker runs the
pipeline deployment on a tiny config; runs, metrics and adapters are read back through the MLflow
server's REST API, as is a run logged to the SQLite store before the server existed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.config import load_config
from tasks.tracking import KIND_TAG
from flows.store import tracking_for
from tests.helpers.processes import ROOT, answers, free_port, start_process, wait_for

PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"
POOL = yaml.safe_load(PREFECT_FILE.read_text())["deployments"][0]["work_pool"]["name"]
PREFECT = str(Path(sys.executable).parent / "prefect")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or "null")


def _run(args, env, cwd: Path = ROOT) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _trigger(env, deployment: str, *params: str) -> str:
    """`prefect deployment run` with --param KEY=JSON; returns the flow run id."""
    args = [PREFECT, "deployment", "run", deployment]
    for param in params:
        args += ["--param", param]
    return re.search(r"UUID: ([0-9a-f-]{36})", _run(args, env)).group(1)


def _final_state(api: str, flow_run_id: str) -> str | None:
    state = _get(f"{api}/flow_runs/{flow_run_id}")["state"]["type"]
    return state if state in FINAL_STATES else None


def test_up_serve_deploy_worker_and_results_through_the_mlflow_server(tiny_config, tmp_path, started, monkeypatch):
    config, home = tiny_config()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env |= {"ADAPTERFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}

    # A run logged with the local SQLite store before any server exists.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ADAPTERFLOW_HOME", raising=False)
    local = replace(tracking_for(load_config(config)), experiment="before-up")
    old_run = local.client().create_run(local.experiment_id()).info.run_id
    local.client().log_metric(old_run, "accuracy", 0.75)
    local.client().log_text(old_run, "logged without a server", "notes/old.txt")
    local.client().set_terminated(old_run)

    # `adapterflow up`, on free ports; the other commands find it through <home>/servers.json. A
    # PREFECT_API_URL of another server in its environment does not lead its UI astray.
    prefect_port, mlflow_port = free_port(), free_port()
    up = start_process(started, [sys.executable, "-m", "flows.cli", "up", str(config), "--prefect-port", str(prefect_port),
                          "--mlflow-port", str(mlflow_port)], env | {"PREFECT_API_URL": "http://127.0.0.1:4200/api"},
                tmp_path / "up.log")
    servers_file = home / "servers.json"
    wait_for(lambda: servers_file.exists() or up.poll() is not None, 150, "no servers.json", tmp_path / "up.log")
    assert up.poll() is None, (tmp_path / "up.log").read_text()
    servers = json.loads(servers_file.read_text())
    started[1].extend([servers["prefect"]["pid"], servers["mlflow"]["pid"]])
    api, tracking_uri = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
    assert servers["env"] == {"PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": tracking_uri}
    assert _get(f"http://127.0.0.1:{prefect_port}/ui-settings")["api_url"] == api  # what the UI's pages call
    cli_env = env | servers["env"]

    # `adapterflow serve` (no PREFECT_API_URL given: it uses servers.json) registers and runs a deployment.
    serve = start_process(started, [sys.executable, "-m", "flows.cli", "serve", str(config)], env, tmp_path / "serve.log")
    served = wait_for(lambda: answers(f"{api}/deployments/name/prepare/adapterflow")
                       and _get(f"{api}/deployments/name/prepare/adapterflow"), 90,
                       "serve registered no deployment", tmp_path / "serve.log")
    assert served["parameters"]["config"] == str(config) and served["work_pool_name"] is None
    prepared = _trigger(cli_env, "prepare/adapterflow")
    state = wait_for(lambda: _final_state(api, prepared), 120, "served run did not finish", tmp_path / "serve.log")
    assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    serve.send_signal(signal.SIGINT)  # Ctrl-C right after a served run ends: serve stops, quietly
    serve.wait(60)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()

    # prefect.yaml on a process pool (it replaces the served deployments), the schedule inactive.
    _run([PREFECT, "work-pool", "create", POOL, "--type", "process"], cli_env)
    _run([PREFECT, "deploy", "--all", "--no-prompt", "--prefect-file", str(PREFECT_FILE.relative_to(ROOT))], cli_env)
    deployment = _get(f"{api}/deployments/name/pipeline/adapterflow")
    assert deployment["work_pool_name"] == POOL
    [schedule] = deployment["schedules"]
    assert schedule["active"] is False and schedule["schedule"]["cron"] and schedule["parameters"]["config"]
    refused = subprocess.run([sys.executable, "-m", "flows.cli", "serve"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "already deployed on a work pool: pipeline/adapterflow" in refused.stderr

    # A real worker, started elsewhere (the pull step moves the run to the project folder), runs
    # the pipeline with an override, logging through the MLflow server.
    flow_run = _trigger(cli_env, "pipeline/adapterflow", f"config={config}",
                        'overrides={"training.sources.epochs": 2}')
    worker = start_process(started, [PREFECT, "worker", "start", "--pool", POOL, "--run-once", "--limit", "1"],
                    cli_env, tmp_path / "worker.log", cwd=tmp_path)
    worker.wait(240)
    assert _final_state(api, flow_run) == "COMPLETED", (tmp_path / "worker.log").read_text()[-5000:]

    # Everything reads back through the MLflow server.
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("flowtest")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    [parent] = [r for r in runs if r.data.tags.get(KIND_TAG) == "pipeline"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.data.tags["stage"] for r in children} == {"sources", "transfer", "evaluate"}
    source = next(r for r in children if r.data.tags["stage"] == "sources")
    assert source.info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded through the server's proxy
    assert [m.step for m in client.get_metric_history(source.info.run_id, "train_loss")] == [1, 2]  # the override
    listed = {a.path for a in client.list_artifacts(source.info.run_id, "adapter")}
    assert listed == {"adapter/adapter_config.json", "adapter/adapter.safetensors"}
    adapter_config = mlflow.artifacts.download_artifacts(run_id=source.info.run_id, tracking_uri=tracking_uri,
                                                         artifact_path="adapter/adapter_config.json",
                                                         dst_path=str(tmp_path / "download"))
    saved = json.loads(Path(adapter_config).read_text())
    assert saved["task"]["name"] == source.data.tags["task"] and saved["training"]["epochs"] == 2
    # the metric MLflow shows is the one the artifact was evaluated with (not merely present)
    assert source.data.metrics["test_accuracy"] == pytest.approx(saved["metrics"]["test_accuracy"], abs=1e-9)
    registered = client.get_model_version_by_alias(f"flowtest.sources.{source.data.tags['task']}.adapter", "current")
    assert registered.run_id == source.info.run_id

    old = client.get_run(old_run)
    assert old.data.metrics["accuracy"] == 0.75
    notes = mlflow.artifacts.download_artifacts(run_id=old_run, artifact_path="notes/old.txt", tracking_uri=tracking_uri,
                                                dst_path=str(tmp_path / "old"))
    assert Path(notes).read_text() == "logged without a server"

    # `adapterflow report` (no MLFLOW_TRACKING_URI given) reads the comparison through the server too.
    report = _run([sys.executable, "-m", "flows.cli", "report", "--config", str(config)], env)
    assert f"MLflow store: {tracking_uri}" in report and "scalearn" in report

    # SIGTERM stops both servers and removes servers.json.
    up.send_signal(signal.SIGTERM)
    assert up.wait(60) == 0, (tmp_path / "up.log").read_text()
    assert not servers_file.exists()
    assert not answers(f"{api}/health") and not answers(f"{tracking_uri}/health")
