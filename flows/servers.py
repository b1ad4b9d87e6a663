"""Local Prefect and MLflow servers for one project home (`adapterflow up`), and how the other
commands find them.

`up` starts `prefect server start` (its database in $PREFECT_HOME) and `mlflow server` over the
home's own store (`mlflow.db`, artifacts in `mlartifacts/`, so runs logged without a server stay
readable), both on 127.0.0.1. Once both answer, it writes `<home>/servers.json`; `run`, `report`
and `serve` then point PREFECT_API_URL and MLFLOW_TRACKING_URI at them, unless those are set.
No Prefect or MLflow import at module level: Prefect reads its settings when first imported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from peft_core.errors import AdapterflowError
from tasks.relocation import relocate_store
from tasks.server_errors import PREFECT_FIX, PROBE_TIMEOUT_S, unreachable

HOST = "127.0.0.1"
SERVERS_FILE = "servers.json"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


@dataclass
class Server:
    name: str
    port: int
    option: str  # the `up` option that moves it to another port
    command: list[str]
    health_path: str
    env_var: str  # how clients find it: `env_var` = base URL + `env_path`
    env_path: str = ""
    own_env: dict[str, str] = field(default_factory=dict)  # the server process's settings besides the CLI's

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _servers(home: Path, prefect_port: int, mlflow_port: int) -> list[Server]:
    prefect = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(prefect_port)]
    mlflow = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(mlflow_port),
              "--workers", "1",  # one process writing the SQLite store
              "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
              "--serve-artifacts", "--artifacts-destination", str(home / "mlartifacts")]
    # The UI's pages call the API at PREFECT_UI_API_URL, which defaults to PREFECT_API_URL (another
    # server's, when set) or else port 4200, not to the `--port` the server listens on.
    api = f"http://{HOST}:{prefect_port}/api"
    prefect_env = {"PREFECT_SERVER_UI_API_URL": api, "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api}
    return [Server("prefect", prefect_port, "--prefect-port", prefect, "/api/health", "PREFECT_API_URL", "/api",
                   prefect_env),
            Server("mlflow", mlflow_port, "--mlflow-port", mlflow, "/health", "MLFLOW_TRACKING_URI")]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, HTTP error
        return False


def _check_port_free(server: Server) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            probe.bind((HOST, server.port))
        except OSError:
            raise AdapterflowError(f"port {server.port} on {HOST} is in use; stop what listens there or pass "
                                   f"{server.option} with a free port") from None


def running_servers(home: Path) -> dict | None:
    """The contents of `<home>/servers.json` when both servers it names answer, else None."""
    try:
        info = json.loads((home / SERVERS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    alive = all(_answers(info[name]["health_url"]) for name in ("prefect", "mlflow"))
    return info if alive else None


def use_running_servers(home: Path) -> dict[str, str]:
    """Set PREFECT_API_URL and MLFLOW_TRACKING_URI, where the user has not, to the live servers
    that `adapterflow up` started for `home`; returns what it set. Call before importing Prefect."""
    info = running_servers(home)
    chosen = {var: url for var, url in (info or {}).get("env", {}).items() if var not in os.environ}
    os.environ.update(chosen)
    return chosen


def check_prefect_api() -> None:
    """One AdapterflowError within PROBE_TIMEOUT_S, naming the URL and what to check, when the Prefect
    API this process is set to use does not answer (without one, Prefect starts a temporary server).

    Prefect's client retries connection timeouts for minutes, so its health check runs in a daemon
    thread that is given up on after the timeout."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return
    # Made here, so the timeout counts only the wait for the server (not imports on a busy machine);
    # not closed while a hung request may still hold it.
    client = get_client(sync_client=True).__enter__()
    outcome: list = []
    probe = threading.Thread(target=lambda: outcome.append(client.api_healthcheck()), daemon=True)
    probe.start()
    probe.join(PROBE_TIMEOUT_S)
    if outcome:
        client.__exit__(None, None, None)
    error = outcome[0] if outcome else TimeoutError()
    if error is not None:
        raise AdapterflowError(unreachable("Prefect server", url, error, PROBE_TIMEOUT_S,
                                           f"{PREFECT_FIX} (unset, each run starts a temporary server)"))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_servers(home: Path, prefect_port: int, mlflow_port: int, say: Callable[[str], None]) -> None:
    """Start both servers, publish them in `<home>/servers.json`, and keep them up until Ctrl-C or
    SIGTERM; then stop both and remove the file. Raises AdapterflowError if one cannot start or dies."""
    if (info := running_servers(home)) is not None:
        raise AdapterflowError(f"servers for {home} are already up ({info['prefect']['url']}, {info['mlflow']['url']}, "
                               f"`adapterflow up` pid {info['pid']}); use them or stop that process first")
    servers = _servers(home, prefect_port, mlflow_port)
    for server in servers:
        _check_port_free(server)
    relocate_store(home / "mlflow.db", home)  # a moved or copied home's server reads its own artifacts
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # MLflow's GenAI job runner starts several worker processes that nothing here uses.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    processes: dict[str, subprocess.Popen] = {}
    servers_file = home / SERVERS_FILE
    try:
        for server in servers:
            with open(logs / f"{server.name}-server.log", "w") as log:
                # A session of its own: Ctrl-C reaches only `up`, which then stops the whole group.
                processes[server.name] = subprocess.Popen(server.command, env=env | server.own_env,
                                                          stdin=subprocess.DEVNULL, stdout=log,
                                                          stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until_answering(servers, processes, logs)
        servers_file.write_text(json.dumps({
            "pid": os.getpid(), "env": {s.env_var: s.url + s.env_path for s in servers},
            **{s.name: {"url": s.url, "health_url": s.url + s.health_path, "pid": processes[s.name].pid} for s in servers},
        }, indent=2))
        say(f"Prefect UI   {servers[0].url}    (PREFECT_HOME={os.environ['PREFECT_HOME']})")
        say(f"MLflow UI    {servers[1].url}    (store {home / 'mlflow.db'}, artifacts {home / 'mlartifacts'})")
        from tasks.tracking import runs_view_urls  # MLflow's client: only `up` needs it, not every command here

        for experiment, url in runs_view_urls(f"sqlite:///{home / 'mlflow.db'}", servers[1].url).items():
            say(f"  runs of {experiment}: {url}")
        say("`adapterflow run/report/serve` for this home use them now; for other tools (a worker):")
        for server in servers:
            say(f"export {server.env_var}={server.url + server.env_path}")
        say(f"Logs in {logs}. Ctrl-C stops both.")
        while True:
            for server in servers:
                if (code := processes[server.name].poll()) is not None:
                    raise AdapterflowError(f"the {server.name} server stopped (exit code {code}); "
                                           f"see {logs / f'{server.name}-server.log'}")
            time.sleep(1)
    except KeyboardInterrupt:
        say("Stopping the servers...")
    finally:
        servers_file.unlink(missing_ok=True)
        for process in processes.values():
            _stop(process)
        signal.signal(signal.SIGTERM, previous_handler)


def _wait_until_answering(servers: list[Server], processes: dict[str, subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            if (code := processes[server.name].poll()) is not None:
                raise AdapterflowError(f"the {server.name} server exited with code {code} while starting; "
                                       f"see {logs / f'{server.name}-server.log'}")
            if _answers(server.url + server.health_path):
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            raise AdapterflowError(f"the {waiting[0].name} server did not answer within {START_TIMEOUT_S} s; "
                                   f"see {logs / f'{waiting[0].name}-server.log'}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to whatever is left after STOP_TIMEOUT_S."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived their parent
    except ProcessLookupError:
        pass
    process.wait()
