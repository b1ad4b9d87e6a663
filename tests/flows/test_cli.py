"""Bad input at the command line: one clear line and exit code 2, never a traceback."""

from __future__ import annotations

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
