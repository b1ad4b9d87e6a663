"""`adapterflow export` and `import` against a real (tiny) pipeline run: units carried to another
store and reused there; nothing written over what an export did not write; nothing broken admitted;
a kill midway (SIGKILL) loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import BertModel

from flows.config import load_config
from flows.stages import run_stage
from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE
from tasks.export_folder import MANIFEST, read_export
from tasks.tracking import find_finished_unit
from flows.store import tracking_for
from tests.helpers.configs import FITTED_SETTINGS, write_tiny_config
from tests.helpers.pipeline import invoke, latest_units


def _files(folder: Path) -> dict[str, str] | None:
    """{path: SHA-256} of every file under `folder` (None when there is no folder)."""
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _new_store(folder: Path, backbone_dir: Path) -> Path:
    """The config of a fresh store (a new machine) with the fitted run's settings."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_tiny_config(folder, backbone_dir, **FITTED_SETTINGS)[0]


def _unit_keys(export: Path) -> list[str]:
    return json.loads((export / MANIFEST).read_text())["units"]


def _nothing_imported(config: Path, keys: list[str]) -> bool:
    tracking = tracking_for(load_config(config))
    return (all(find_finished_unit(tracking, key) is None for key in keys)
            and not tracking.client().search_registered_models())


@pytest.fixture(scope="module")
def exported(fitted, tmp_path_factory) -> Path:
    """An export of the fitted run's two source adapters."""
    path, _ = fitted
    folder = tmp_path_factory.mktemp("exported") / "sources"
    code, stdout, stderr = invoke("export", folder, "--stage", "sources", "--config", path)
    assert code == 0 and "exported 2 unit(s)" in stdout, stderr
    return folder


def test_exported_sources_are_reused_by_another_store_until_their_files_break(exported, tmp_path, tiny_backbone_dir):
    listed = json.loads((exported / MANIFEST).read_text())["files"]
    assert listed == {k: v for k, v in _files(exported).items() if k != MANIFEST}  # a checksum for every file
    assert {Path(p).name for p in listed} == {"unit.json", CONFIG_FILE, WEIGHTS_FILE}

    other_path = _new_store(tmp_path, tiny_backbone_dir)
    code, stdout, stderr = invoke("import", exported, "--config", other_path)
    assert code == 0 and "imported 2 unit(s); 0 already in the store" in stdout, stderr
    code, stdout, _ = invoke("import", exported, "--config", other_path)
    assert "imported 0 unit(s); 2 already in the store" in stdout

    other = load_config(other_path)
    tracking = tracking_for(other)
    run_stage(other, "sources")
    assert [r.data.tags.get("reused") for r in latest_units(tracking)] == ["true", "true"]

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"sentence": "the film was good"}) + "\n")
    code, stdout, stderr = invoke("predict", "flowtest.sources.demo_sentiment.adapter@current", rows, "--config", other_path)
    assert code == 0 and json.loads(stdout)["label"] in ("negative", "positive"), stderr

    # A finished unit whose files no longer load is trained again instead of reused.
    damaged = find_finished_unit(tracking, _unit_keys(exported)[0])
    run_id = damaged.data.tags.get("artifact_run_id", damaged.info.run_id)
    weights = next((other.home_dir() / "mlartifacts").rglob(f"{run_id}/artifacts/adapter/{WEIGHTS_FILE}"))
    weights.write_bytes(weights.read_bytes()[:100])
    shutil.rmtree(other.home_dir() / "artifact-cache")
    run_stage(other, "sources")
    reused = {r.data.tags["unit_key"]: r.data.tags.get("reused") for r in latest_units(tracking)}
    assert reused == {_unit_keys(exported)[0]: None, _unit_keys(exported)[1]: "true"}


@pytest.mark.parametrize("case, expected", [
    ("the store", "is the store"),
    ("a folder in the store", "is inside the store"),
    ("the folder that holds the store", "holds the store"),
    ("a folder of other files", "exists and is not an adapterflow export (it holds notes.txt); pass a new folder"),
    ("a file", "is a file; pass a new folder to export to"),
    ("an earlier export", "holds an earlier export; pass --overwrite to replace it, or a new folder"),
    ("a stage name that is not one", "unknown --stage 'source'; the stages whose units can be exported: sources, "
                                     "transfer, multitask"),
    ("a folder that cannot be written", "a-file is a file; pass a folder you can write"),
])
def test_export_writes_over_nothing_it_did_not_write(fitted, exported, tmp_path, case, expected):
    path, cfg = fitted
    home, extra = cfg.home_dir(), []
    destination = {"the store": home, "a folder in the store": home / "exports", "a file": tmp_path / "notes.txt",
                   "the folder that holds the store": home.parent}.get(case, tmp_path / "export")
    if case == "a folder of other files":
        destination.mkdir()
        (destination / "notes.txt").write_text("mine")
    elif case == "a file":
        destination.write_text("mine")
    elif case == "an earlier export":
        shutil.copytree(exported, destination)
    elif case == "a stage name that is not one":
        extra = ["--stage", "source"]
    elif case == "a folder that cannot be written":
        (tmp_path / "a-file").write_text("mine")
        destination = tmp_path / "a-file" / "export"
    before = _files(destination)
    code, stdout, stderr = invoke("export", destination, "--config", path, *extra)
    assert code == 2 and expected in stderr and stderr.count("\n") == 1, stdout + stderr
    assert _files(destination) == before


def test_export_replaces_an_earlier_export_when_asked(fitted, exported, tmp_path):
    path, _ = fitted
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = invoke("export", tmp_path / "empty", "--stage", "transfer", "--config", path)
    assert code == 0 and "exported 2 unit(s)" in stdout, stderr  # the target adapter and ScaLearn

    shutil.copytree(exported, tmp_path / "export")
    code, stdout, stderr = invoke("export", tmp_path / "export", "--overwrite", "--config", path)
    assert code == 0 and "exported 5 unit(s)" in stdout, stderr  # and the joint model
    assert len(read_export(tmp_path / "export")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "export"]  # nothing left aside


@pytest.fixture
def other_backbone_dir(tmp_path, tiny_backbone_dir) -> Path:
    """The tiny BERT's architecture and vocabulary with other weights: another checkpoint."""
    folder = tmp_path / "other-bert"
    shutil.copytree(tiny_backbone_dir, folder)
    torch.manual_seed(1)
    BertModel(BertModel.config_class.from_pretrained(folder)).save_pretrained(folder)
    return folder


def _damage(export: Path, case: str) -> None:
    """Damage `export` as `case` says, its manifest's checksums updated where the case says so."""
    manifest = json.loads((export / MANIFEST).read_text())
    unit = f"units/{manifest['units'][0]}"
    weights, config = f"{unit}/adapter/{WEIGHTS_FILE}", f"{unit}/adapter/{CONFIG_FILE}"
    if case == "manifest cut short":
        (export / MANIFEST).write_text((export / MANIFEST).read_text()[:200])
        return
    if case == "manifest without units":
        del manifest["units"]
    elif case == "export format 1":
        manifest = {"format": 1, "units": manifest["units"]}
    elif case == "a file added":
        (export / f"{unit}/adapter/notes.txt").write_text("mine")
    else:
        path, data = {
            "weights cut short": (weights, (export / weights).read_bytes()[:100]),
            "fingerprint edited": (config, (export / config).read_text().replace('"fingerprint": "', '"fingerprint": "0')),
            "weights cut short before the export": (weights, (export / weights).read_bytes()[:-1]),
            "unit.json cut short": (f"{unit}/unit.json", (export / unit / "unit.json").read_text()[:100]),
        }[case]
        (export / path).write_bytes(data.encode() if isinstance(data, str) else data)
        if case in ("weights cut short before the export", "unit.json cut short"):
            manifest["files"][path] = hashlib.sha256((export / path).read_bytes()).hexdigest()
    (export / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("case, expected", [
    ("weights cut short", f"{WEIGHTS_FILE} does not match its checksum in manifest.json (damaged or edited since "
                          "the export); export it again"),
    ("fingerprint edited", f"{CONFIG_FILE} does not match its checksum in manifest.json"),
    ("weights cut short before the export", f"{WEIGHTS_FILE} cannot be loaded (incomplete metadata"),
    ("a file added", "notes.txt is not part of the export (its manifest lists no such file)"),
    ("manifest cut short", "manifest.json is not valid JSON ("),
    ("manifest without units", "manifest.json: 'units' is not a list of unit keys; export it again"),
    ("unit.json cut short", "unit.json is not valid JSON ("),
    ("export format 1", "has export format 1 (without checksums), this version reads 2"),
    ("made on another backbone", "of the export was made on backbone '"),
])
def test_import_admits_nothing_broken(exported, tmp_path, tiny_backbone_dir, other_backbone_dir, case, expected):
    export = tmp_path / "export"
    shutil.copytree(exported, export)
    keys = _unit_keys(export)
    if case != "made on another backbone":
        _damage(export, case)
    config = _new_store(tmp_path / "store", other_backbone_dir if case == "made on another backbone"
                        else tiny_backbone_dir)
    code, stdout, stderr = invoke("import", export, "--config", config)
    assert code == 2 and expected in stderr and stderr.count("\n") == 1, stdout + stderr
    assert _nothing_imported(config, keys)


# --- killed midway (SIGKILL) -------------------------------------------------------------------

def _start(tmp_path: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_when(process: subprocess.Popen, ready, timeout_s: float = 120) -> bool:
    """SIGKILL `process` as soon as `ready()`; False when it ended first."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        assert time.monotonic() < deadline, "nothing happened before the deadline"
        time.sleep(0.001)
    return False


def _importing_second_unit(db: Path):
    def ready() -> bool:
        try:
            with sqlite3.connect(db) as con:
                return con.execute("select count(*) from tags where key = 'imported_from'").fetchone()[0] >= 2
        except sqlite3.OperationalError:  # no store or no tables yet
            return False

    return ready


def test_an_import_killed_midway_leaves_nothing_reusable(exported, tmp_path, tiny_backbone_dir):
    config = _new_store(tmp_path, tiny_backbone_dir)
    process = _start(tmp_path, "import", exported, "--config", config)
    assert _kill_when(process, _importing_second_unit(tmp_path / "home" / "mlflow.db")), process.stdout.read()[-3000:]
    assert _nothing_imported(config, _unit_keys(exported))
    code, stdout, stderr = invoke("import", exported, "--config", config)
    assert code == 0 and "imported 2 unit(s); 0 already in the store" in stdout, stderr


def test_an_export_killed_midway_leaves_the_earlier_export_as_it_was(fitted, exported, tmp_path):
    """The earlier export is replaced by one rename: a kill leaves it as it was or the new one complete.
    The write takes a moment only, so a kill may land after it: then the test tries again."""
    path, _ = fitted
    destination = tmp_path / "export"
    shutil.copytree(exported, destination)
    before = _files(destination)

    def writing() -> bool:
        return any(p.name.startswith(".tmp-export-") for p in tmp_path.iterdir())

    for _ in range(3):
        process = _start(tmp_path, "export", destination, "--overwrite", "--config", path)
        killed = _kill_when(process, writing)
        if _files(destination) == before:
            if killed:
                return
            pytest.fail(f"the export ended without replacing the earlier one:\n{process.stdout.read()[-3000:]}")
        assert len(read_export(destination)) == 5  # the kill came after the rename: the new export, complete
        shutil.rmtree(destination)
        shutil.copytree(exported, destination)
    pytest.fail("every kill came after the export had finished writing")
