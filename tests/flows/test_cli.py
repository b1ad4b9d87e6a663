"""Bad input at the command line: one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flows.cli import app


def _invoke(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("name: x\nbogus_key: 1\n", "field 'bogus_key': unknown key"),
        ("name: x\ntraining: {sources: {epochs: many}}\n", "field 'training.sources.epochs'"),
        ("sources: [not_a_task]\n", "unknown task 'not_a_task'"),
        ("methods: [scalearnn]\n", "valid methods: adapter"),
        ("data: {source: local, path: /nonexistent/glue}\n", "data folder /nonexistent/glue does not exist"),
        ("name: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path, yaml_text, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    code, output = _invoke("run", str(config))
    assert code == 2
    assert expected in output
    assert "Traceback" not in output


def test_missing_config_file(tmp_path):
    code, output = _invoke("run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in output


def test_unknown_stage():
    code, output = _invoke("run", "--stage", "nope")
    assert code == 2 and "unknown stage 'nope'" in output


def test_report_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path / "home"))
    code, output = _invoke("report", "--experiment", "never-ran")
    assert code == 2 and "no MLflow experiment 'never-ran'" in output


def test_tasks_lists_the_registry():
    code, output = _invoke("tasks")
    assert code == 0
    for name in ("rte", "mnli", "superglue_rte", "copa", "demo_lowres"):
        assert name in output


def test_bad_data_row_fails_with_one_line_and_no_traceback(tiny_config, tmp_path):
    """As a user runs it: a real process, Prefect's own logging, the temporary Prefect server it starts
    and stops, a malformed row in a GLUE file: the error once, as the last line."""
    rte = tmp_path / "glue" / "RTE"
    rte.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    rows = "".join(f"{i}\tthe film was good\tthe film was bad\tnot_entailment\n" for i in range(30))
    (rte / "train.tsv").write_text(header + rows + "30\tonly two fields\n")
    (rte / "dev.tsv").write_text(header + rows)
    config, _ = tiny_config(data={"source": "local", "path": str(tmp_path / "glue")}, sources=["rte"], targets=[],
                            methods=["adapter"])
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    printed = done.stdout
    assert done.returncode == 2, printed
    assert "Starting temporary server" in printed
    last = printed.strip().splitlines()[-1]
    assert last.startswith("error: ") and "train.tsv:32: 2 tab-separated fields, expected 4" in last, printed
    assert printed.count("tab-separated fields") == 1, printed
    assert "Traceback" not in printed
