"""Every input a user hands over, wrong, through the real CLI in a subprocess: exit code 2, no
traceback, the error printed once and as the last line, and no waiting on a server that is away.

Cases that need Prefect share one API server (the session's test harness) instead of each
starting a temporary one; tests/flows/test_cli.py keeps the case that does start one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flows.config import load_config, parse_overrides
from tasks.tracking import UnitRun, end_run, start_pipeline_run
from flows.store import tracking_for
from tests.helpers.processes import free_port

SERVER_LIMIT_S = 15  # a server that does not answer must fail a command within this, once it has started


@dataclass
class Outcome:
    code: int
    output: str
    seconds: float

    @property
    def last_line(self) -> str:
        return self.output.strip().splitlines()[-1]


def run_cli(cwd: Path, *args: str, **env: str) -> Outcome:
    """`adapterflow ARGS` as a user runs it, stdout and stderr in one stream in the order printed."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "ADAPTERFLOW_HOME", "ADAPTERFLOW_DATA_DIR")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300,
                          env={**base, "PREFECT_HOME": str(cwd / "prefect"), "PYTHONUNBUFFERED": "1", **env})
    return Outcome(done.returncode, done.stdout, time.monotonic() - started)


def assert_user_error(outcome: Outcome, expected: str) -> None:
    assert outcome.code == 2, outcome.output
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.last_line.startswith("error: ") and expected in outcome.last_line, outcome.output
    assert outcome.output.count(expected) == 1, f"printed more than once:\n{outcome.output}"


@pytest.fixture
def write_config(tmp_path, tiny_backbone_dir):
    """A small valid config with `changes` applied (dotted keys), written to tmp_path/my.yaml."""

    def write(**changes) -> Path:
        cfg = {"name": "mine", "backbone": str(tiny_backbone_dir), "home": str(tmp_path / "home"),
               "data": {"source": "demo", "max_train": 32, "max_eval": 16},
               "sources": ["demo_sentiment"], "targets": ["demo_lowres"], "methods": ["adapter"], "seeds": [42]}
        for dotted, value in changes.items():
            node = cfg
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        path = tmp_path / "my.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


# --- the config file, the command line: refused before any server starts ----------------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({"bogus_key": 1}, "my.yaml: field 'bogus_key': unknown key"),
    ({"training.sources.epochs": "many"}, "my.yaml: field 'training.sources.epochs'"),
    ({"sources": ["demo_sentiment", "not_a_task"]}, "my.yaml: field 'sources': unknown task 'not_a_task'"),
    ({"data.max_train_per_task": {"not_a_task": 8}}, "my.yaml: field 'data.max_train_per_task': task(s) "
                                                     "not_a_task not among this config's sources and targets"),
    ({"data.max_train_per_task": {"demo_nli": 8}}, "my.yaml: field 'data.max_train_per_task': task(s) demo_nli not "
                                                   "among this config's sources and targets; cap one of: "
                                                   "demo_sentiment, demo_lowres"),
    ({"backbone": "/nonexistent/bert-folder"}, "backbone folder /nonexistent/bert-folder not found"),
    ({"task_output": "text"}, "is of the encoder family: text-to-text tasks (task_output: text) need an encoder-decoder"),
    ({"data": {"source": "local", "path": "/nonexistent/glue"}}, "data folder /nonexistent/glue does not exist"),
])
def test_bad_config_values(tmp_path, write_config, changes, expected):
    assert_user_error(run_cli(tmp_path, "run", str(write_config(**changes))), expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\nsources: [demo_nli\n", "is not valid YAML: line 3, column 1:"),
    ("\x89PNG\r\n\x1a\n\xff\xfe", "is not a text file"),
])
def test_unreadable_config_files(tmp_path, text, expected):
    config = tmp_path / "broken.yaml"
    config.write_bytes(text.encode("latin-1"))
    assert_user_error(run_cli(tmp_path, "run", str(config)), expected)


@pytest.mark.parametrize(("args", "expected"), [
    (["--set", "training.sources.epochz=3"], "override training.sources.epochz=3: field 'training.sources.epochz': "
                                              "unknown key"),
    (["--set", "seeds=[1,x]"], "override seeds=[1, 'x']: field 'seeds.1': Input should be a valid integer"),
    (["--set", "seeds.first=1"], "override seeds.first: 'seeds' is [42], not a section"),
    (["--set", "seeds=null"], "override seeds=None: field 'seeds': Input should be a valid list; this field "
                              "cannot be null"),
])
def test_bad_command_line(tmp_path, write_config, args, expected):
    assert_user_error(run_cli(tmp_path, "run", str(write_config()), *args), expected)


@pytest.mark.parametrize(("command", "setting"), [("run", "$ADAPTERFLOW_HOME"), ("report", "`home` in the config")])
def test_a_home_that_cannot_be_written(tmp_path, write_config, command, setting):
    (tmp_path / "a-file").write_text("")
    home = tmp_path / "a-file" / "home"  # a file where a folder should be
    if setting == "$ADAPTERFLOW_HOME":
        outcome = run_cli(tmp_path, command, str(write_config()), ADAPTERFLOW_HOME=str(home))
    else:
        outcome = run_cli(tmp_path, command, "--config", str(write_config(home=str(home))))
    assert_user_error(outcome, f"home folder {home} (from {setting}) cannot be written (Not a directory: {home}); "
                               f"set {setting} to a folder you can write")


def test_task_caps_take_any_spelling_of_a_task_name(write_config):
    cfg = load_config(write_config(**{"data.max_train_per_task": {"Demo-Sentiment": 8}}))
    assert cfg.data.train_cap("demo_sentiment") == 8 and cfg.data.train_cap("demo_lowres") == 32


def test_set_null_clears_a_field_that_may_be_null(write_config):
    config = write_config(**{"tracking.uri": "http://127.0.0.1:5000"})
    cfg = load_config(config, **parse_overrides(["data.max_train=null", "tracking.uri=~"]))
    assert cfg.data.max_train is None and cfg.tracking.uri is None and cfg.data.max_eval == 16


@pytest.mark.parametrize(("args", "expected"), [
    (["predict", "demo_lowres/adapter", "rows.jsonl", "--batch-size", "0"],
     "Invalid value for '--batch-size': Input should be greater than or equal to 1; see `"),
    (["up", "--prefect-port", "70000"], "Invalid value for '--prefect-port': Input should be less than or equal to "
                                        "65535; see `"),
    (["export"], "Missing argument 'folder'; see `"),
    (["report", "extra"], "Got unexpected extra argument(s) (extra); see `"),
])
def test_usage_errors_of_the_command_line(tmp_path, args, expected):
    outcome = run_cli(tmp_path, *args)
    assert_user_error(outcome, expected)
    assert "─" not in outcome.output  # no box drawing


# --- data files: found in the prepare stage, under Prefect --------------------------------------

HEADER = "index\tsentence1\tsentence2\tlabel\n"
ROWS = "".join(f"{i}\tthe film was good\tthe film was bad\tnot_entailment\n" for i in range(20))


@pytest.mark.parametrize(("task", "folder", "files", "expected"), [
    ("rte", "RTE", {"train.tsv": "index\tsentence1\tlabel\n0\tgood\tentailment\n", "dev.tsv": HEADER + ROWS},
     "train.tsv: no column 'sentence2' (found: index, sentence1, label)"),
    ("rte", "RTE", {"train.tsv": HEADER + ROWS + "20\ta\tb\tmaybe\n", "dev.tsv": HEADER + ROWS},
     "train.tsv:22, column 'label': label 'maybe' is not a label of task rte"),
    ("rte", "RTE", {"train.tsv": HEADER, "dev.tsv": HEADER + ROWS}, "train.tsv: the file has no rows"),
    ("boolq", "BoolQ", {"train.jsonl": '{"question": "q", "passage": "p", "label": true}\n{"question": "q", \n',
                        "val.jsonl": '{"question": "q", "passage": "p", "label": false}\n'},
     "train.jsonl:2: not valid JSON"),
    ("stsb", "STS-B", {"train.tsv": "index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.2\n1\ta\tb\thigh\n",
                       "dev.tsv": "index\tsentence1\tsentence2\tscore\n0\ta\tb\t1.0\n"},
     "train.tsv:3, column 'score': score 'high' is not a number"),
])
def test_bad_data_files(tmp_path, write_config, prefect_api_url, task, folder, files, expected):
    assert_user_error(_prepare_data(tmp_path, write_config, prefect_api_url, task, folder, files), expected)


def test_bad_data_file_with_the_dask_runner(tmp_path, write_config, prefect_api_url):
    files = {"train.tsv": HEADER + ROWS + "20\ta\tb\tmaybe\n", "dev.tsv": HEADER + ROWS}
    outcome = _prepare_data(tmp_path, write_config, prefect_api_url, "rte", "RTE", files,
                            runner={"kind": "dask", "workers": 1})
    assert_user_error(outcome, "train.tsv:22, column 'label': label 'maybe' is not a label of task rte")


def _prepare_data(tmp_path, write_config, prefect_api_url, task: str, folder: str, files: dict[str, str],
                  **changes) -> Outcome:
    """`run --stage prepare` of a config whose one source task reads `files` in a GLUE `folder`."""
    (tmp_path / "glue" / folder).mkdir(parents=True)
    for name, text in files.items():
        (tmp_path / "glue" / folder / name).write_text(text)
    config = write_config(**{"data": {"source": "local", "path": str(tmp_path / "glue")}, "sources": [task],
                             "targets": []}, **changes)
    return run_cli(tmp_path, "run", str(config), "--stage", "prepare", PREFECT_API_URL=prefect_api_url)


def test_transfer_stage_before_sources(tmp_path, write_config, prefect_api_url):
    outcome = run_cli(tmp_path, "run", str(write_config(methods=["average"])), "--stage", "transfer",
                      PREFECT_API_URL=prefect_api_url)
    assert_user_error(outcome, "no source adapter in MLflow")
    assert "`adapterflow run CONFIG --stage sources`" in outcome.last_line


# --- servers that are not there ----------------------------------------------------------------

@pytest.fixture(scope="module")
def startup_s(tmp_path_factory) -> float:
    """How long the CLI takes to import what it needs before it asks any server (on a busy machine,
    more than the limit itself)."""
    started = time.monotonic()
    imports = "import flows.cli, flows.stages, prefect; prefect.get_client(sync_client=True)"
    subprocess.run([sys.executable, "-c", imports], check=True, cwd=tmp_path_factory.mktemp("startup"))
    return time.monotonic() - started


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (a hung or firewalled server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def test_report_with_tracking_server_refusing(tmp_path, startup_s):
    uri = f"http://127.0.0.1:{free_port()}"
    outcome = run_cli(tmp_path, "report", MLFLOW_TRACKING_URI=uri)
    assert_user_error(outcome, f"MLflow tracking server {uri} is not reachable (connection refused)")
    assert outcome.seconds < startup_s + SERVER_LIMIT_S


def test_run_with_tracking_server_silent(tmp_path, write_config, silent_port, startup_s):
    uri = f"http://127.0.0.1:{silent_port}"
    outcome = run_cli(tmp_path, "run", str(write_config(**{"tracking.uri": uri})))
    assert_user_error(outcome, f"MLflow tracking server {uri} is not reachable (no answer within")
    assert outcome.seconds < startup_s + SERVER_LIMIT_S


@pytest.fixture
def tracking_server_going_away():
    """A tracking server that answers the start-up health check, then is gone (stopped mid-run)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer_once():
        with listener, listener.accept()[0] as connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")

    threading.Thread(target=answer_once, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_report_with_tracking_server_gone_after_answering(tmp_path, tracking_server_going_away, startup_s):
    uri = tracking_server_going_away
    outcome = run_cli(tmp_path, "report", MLFLOW_TRACKING_URI=uri)
    assert_user_error(outcome, f"MLflow tracking server {uri} is not reachable (connection refused)")
    assert outcome.seconds < startup_s + SERVER_LIMIT_S


def test_run_with_prefect_server_refusing(tmp_path, write_config, startup_s):
    url = f"http://127.0.0.1:{free_port()}/api"
    outcome = run_cli(tmp_path, "run", str(write_config()), PREFECT_API_URL=url)
    assert_user_error(outcome, f"Prefect server {url} is not reachable (connection refused)")
    assert outcome.seconds < startup_s + SERVER_LIMIT_S


def test_serve_with_prefect_server_silent(tmp_path, silent_port, startup_s):
    url = f"http://127.0.0.1:{silent_port}/api"
    outcome = run_cli(tmp_path, "serve", PREFECT_API_URL=url)
    assert_user_error(outcome, f"Prefect server {url} is not reachable (no answer within")
    assert outcome.seconds < startup_s + SERVER_LIMIT_S


def test_up_on_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        outcome = run_cli(tmp_path, "up", "--mlflow-port", str(port))
    assert_user_error(outcome, f"port {port} on 127.0.0.1 is in use; stop what listens there or pass --mlflow-port")


# --- report: which run, and what when there is none ---------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The default home of a folder where `adapterflow run my.yaml` (experiment 'mine') finished one
    pipeline run, then failed in a later one after finishing one more unit."""
    folder = tmp_path_factory.mktemp("project")
    cfg = load_config(None, **{"name": "mine", "home": str(folder / ".adapterflow")})
    tracking = tracking_for(cfg)
    runs = {}
    for label, method, failed in (("good", "scalearn", False), ("bad", "average", True)):
        parent = start_pipeline_run(tracking, cfg.model_dump(mode="json"), f"pipeline {label}")
        with UnitRun(tracking, parent, f"transfer/demo_lowres/{method}", stage="transfer", task="demo_lowres",
                     method=method, unit_key=f"key-{method}") as unit:
            unit.log_metrics({"test_accuracy": 0.75})
        end_run(tracking, parent, failed=failed)
        runs[label], runs[f"{label}_unit"] = parent, unit.run_id
    return folder, runs


def test_report_after_a_failed_run_shows_the_finished_one(store):
    folder, runs = store
    outcome = run_cli(folder, "report", "--format", "csv")
    assert outcome.code == 0 and "Traceback" not in outcome.output, outcome.output
    assert f"the latest pipeline run 'pipeline bad' ({runs['bad']}) failed; showing the latest finished one" \
        in outcome.output
    assert f"--run {runs['bad']}" in outcome.output
    assert "scalearn" in outcome.output and "average" not in outcome.output


def test_report_of_the_failed_run_shows_what_it_finished(store):
    folder, runs = store
    outcome = run_cli(folder, "report", "--run", runs["bad"])
    assert outcome.code == 0 and "Traceback" not in outcome.output, outcome.output
    assert "'pipeline bad'" in outcome.output and "failed; showing the units it finished" in outcome.output
    assert "average" in outcome.output and "of experiment 'mine'" in outcome.output


@pytest.mark.parametrize(("run_key", "expected"), [
    (None, "--run 0123abcd: no such run at sqlite:///"),
    ("good_unit", "is not a pipeline run (transfer/demo_lowres/scalearn); its pipeline run is "),
])
def test_report_of_a_run_that_is_not_a_pipeline_run(store, run_key, expected):
    folder, runs = store
    outcome = run_cli(folder, "report", "--run", runs[run_key] if run_key else "0123abcd")
    assert_user_error(outcome, expected)


def test_report_without_runs_says_what_to_pass(tmp_path):
    outcome = run_cli(tmp_path, "report")
    assert_user_error(outcome, "has no pipeline runs yet; run `adapterflow run CONFIG` first, or pass "
                               "`--config CONFIG` with the config you ran")
