"""Fast checks of `up`, `serve` and the deployments, without starting the real servers
(tests/integration/test_servers.py starts them)."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from typer.testing import CliRunner

from flows.cli import app
from flows.deployments import PREFECT_FILE, PROJECT_DIR, load_deployed_config
from flows.servers import use_running_servers
from flows.stages import STAGES


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def healthy_url():
    """A real HTTP server on loopback that answers 200 to every GET, like a healthy server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _write_servers_json(home, health_url):
    home.mkdir(parents=True, exist_ok=True)
    (home / "servers.json").write_text(json.dumps({
        "pid": 1, "env": {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"},
        "prefect": {"url": health_url, "health_url": f"{health_url}/api/health", "pid": 2},
        "mlflow": {"url": health_url, "health_url": f"{health_url}/health", "pid": 3},
    }))


def _unset(monkeypatch, name):
    """Unset `name` for this test; whatever the code under test sets is removed again afterwards."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def test_live_servers_are_used_unless_the_user_set_the_variable(tmp_path, monkeypatch, healthy_url):
    _write_servers_json(tmp_path, healthy_url)
    _unset(monkeypatch, "PREFECT_API_URL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mine:5000")
    assert use_running_servers(tmp_path) == {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mine:5000"


def test_servers_that_do_not_answer_are_ignored(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    _write_servers_json(tmp_path, dead)
    _unset(monkeypatch, "PREFECT_API_URL")
    assert use_running_servers(tmp_path) == {} and "PREFECT_API_URL" not in os.environ
    assert use_running_servers(tmp_path / "no-servers-here") == {}


def test_up_names_a_busy_port_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["up", "--prefect-port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.output and "--prefect-port" in result.output
    assert not (tmp_path / "servers.json").exists()


def test_serve_without_a_prefect_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--prefect-file", str(tmp_path / "prefect.yaml")])
    assert result.exit_code == 2 and "prefect.yaml does not exist; pass --prefect-file" in result.output


def test_prefect_yaml_deploys_every_stage_and_the_pipeline_with_an_inactive_schedule():
    entries = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    flows = {load_flow_from_entrypoint(str(PROJECT_DIR / e["entrypoint"])).name: e for e in entries}
    assert set(flows) == {"pipeline", *STAGES}
    assert all(e["work_pool"]["name"] == "adapterflow-process" for e in entries)
    [nightly] = flows["pipeline"]["schedules"]
    assert nightly["active"] is False and nightly["parameters"]["overrides"]


def test_deployed_config_path_is_read_from_the_project_with_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_deployed_config("configs/demo.yaml", {"training.sources.epochs": 3})
    assert cfg.training.sources.epochs == 3
    assert load_deployed_config(str(PROJECT_DIR / "configs" / "demo.yaml"), None).name == cfg.name


def test_a_deployment_run_fails_with_the_error_line_as_its_message(prefect_api, tmp_path):
    from flows.deployments import prepare

    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [rtee]\n")
    state = prepare(config=str(bad), return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"{bad}: field 'sources': unknown task 'rtee'; use one of:")


def test_the_prefect_ui_is_told_the_api_on_its_own_port(tmp_path, monkeypatch):
    """Prefect's UI calls PREFECT_UI_API_URL, which defaults to PREFECT_API_URL or port 4200, not to the
    port the server listens on (tests/integration/test_servers.py asks a running UI)."""
    from flows.servers import _servers

    prefect, mlflow = _servers(tmp_path, 4311, 5011)
    assert set(prefect.own_env.values()) == {"http://127.0.0.1:4311/api"}
    assert {"PREFECT_SERVER_UI_API_URL", "PREFECT_API_URL"} <= set(prefect.own_env) and not mlflow.own_env
