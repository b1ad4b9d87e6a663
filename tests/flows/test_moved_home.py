"""A home folder copied or moved elsewhere keeps working: its store reads its own artifacts, never the
folder it was made in (which a move makes disappear)."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

from flows.config import load_config
from flows.stages import run_stage
from peft_core import inference
from peft_core.inputs import input_fields
from peft_core.task_specs import get_task
from tasks.relocation import LOCATION_COLUMNS
from flows.store import tracking_for
from tests.helpers.configs import FITTED_SETTINGS, write_tiny_config
from tests.helpers.pipeline import invoke, latest_units

TARGET = get_task("demo_lowres")
reads = inference.read_artifact_config


def _config_at(folder: Path, backbone_dir: Path) -> Path:
    """The fitted run's config with its home at `folder`/home."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_tiny_config(folder, backbone_dir, **FITTED_SETTINGS)[0]


def _recorded_locations(home: Path) -> list[str]:
    """Every location the home's store records (of experiments we made: MLflow's Default one is not ours)."""
    with sqlite3.connect(f"file:{home / 'mlflow.db'}?mode=ro", uri=True) as db:
        return [value for table, column in LOCATION_COLUMNS
                for (value,) in db.execute(f"SELECT {column} FROM {table}" +
                                           (" WHERE name != 'Default'" if table == "experiments" else ""))
                if value]


def test_a_copied_then_moved_home_reads_only_its_own_files(fitted, tmp_path, tiny_backbone_dir, caplog, monkeypatch):
    _, cfg = fitted
    original = cfg.home_dir()
    first = load_config(_config_at(tmp_path / "first", tiny_backbone_dir))
    shutil.copytree(original, first.home_dir(), symlinks=True)  # the fixture's home is only read

    # Opened, the copy points its store at itself (one line says so), not at the home it was copied from.
    with caplog.at_level(logging.WARNING, logger="tasks.relocation"):
        tracking_for(first).client()
    assert f"moved or copied from {original.as_uri()}" in caplog.text
    assert all(first.home_dir().as_uri() + "/" in value for value in _recorded_locations(first.home_dir()))

    # Moved (the old folder is gone) with no cached downloads and one prepared data folder lost.
    second_path = _config_at(tmp_path / "second", tiny_backbone_dir)
    second = load_config(second_path)
    first.home_dir().rename(second.home_dir())
    for cache in ("artifact-cache", "model-cache"):
        shutil.rmtree(second.home_dir() / cache, ignore_errors=True)
    (lost,) = (second.home_dir() / "data").glob(f"{TARGET.name}-*")
    shutil.rmtree(lost)

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(dict.fromkeys(input_fields(TARGET), "the film was good")) + "\n"
                            for _ in range(3)))
    code, stdout, stderr = invoke("predict", f"{TARGET.name}/scalearn", rows, "--config", second_path)
    assert code == 0, stderr
    assert {json.loads(line)["label"] for line in stdout.splitlines()} <= set(TARGET.label_names)
    code, stdout, stderr = invoke("report", "--config", second_path)
    assert code == 0 and "scalearn" in stdout, stderr

    run_stage(second, None)  # trains nothing: every unit is found finished, its files in the moved home
    units = latest_units(tracking_for(second))
    assert units and all(r.data.tags.get("reused") == "true" for r in units), \
        [(r.info.run_name, r.data.tags.get("reused")) for r in units]
    assert (lost / "manifest.json").is_file()  # prepared again, under the same digest
    assert all(second.home_dir().as_uri() + "/" in value for value in _recorded_locations(second.home_dir()))

    # An export bundles each fit's sources from the moved home, not from the folders the fit recorded.
    read = []
    monkeypatch.setattr(inference, "read_artifact_config", lambda folder: read.append(folder) or reads(folder))
    code, stdout, stderr = invoke("export", tmp_path / "export", "--stage", "transfer", "--config", second_path)
    assert code == 0, stderr
    assert read and all(Path(folder).is_relative_to(second.home_dir()) for folder in read), read
