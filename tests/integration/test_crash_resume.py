"""Kill the pipeline with SIGKILL mid-stage, run it again: it completes, no finished unit runs
twice, the killed run is marked FAILED, and the results equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import yaml

from flows.config import load_config
from tasks.reporting import comparison_table
from tasks.tracking import KIND_TAG
from flows.store import tracking_for

METRICS = ["test_accuracy", "validation_accuracy"]


def _start(config_path, tmp_path, prefect_api_url):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": prefect_api_url}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_group(process) -> None:
    """Whatever the stopped run left behind in its process group (normally nothing)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _finished_units(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute(
                "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                "where r.status = 'FINISHED' and t.key = 'stage' and t.value = 'sources'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _kill_after_first_unit(process, db, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if _finished_units(db) >= 1:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            _kill_group(process)
            return
        time.sleep(0.2)
    raise AssertionError(f"no unit finished before the kill deadline:\n{process.communicate()[0][-3000:]}")


def _write(tmp_path, name, base_config):
    cfg = yaml.safe_load(base_config.read_text())
    cfg["home"] = str(tmp_path / name)
    cfg["runner"] = {"kind": "threads", "workers": 1}  # one worker: bit-identical reruns
    cfg["training"]["sources"]["epochs"] = 3
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigkill_then_rerun_completes_without_redoing_finished_units(tiny_config, tmp_path, prefect_api_url):
    base, _ = tiny_config(sources=["demo_sentiment", "demo_nli", "demo_similarity"])
    crashed_cfg = _write(tmp_path, "crashed", base)
    clean_cfg = _write(tmp_path, "clean", base)

    process = _start(crashed_cfg, tmp_path, prefect_api_url)
    _kill_after_first_unit(process, tmp_path / "crashed" / "mlflow.db")
    rerun = _start(crashed_cfg, tmp_path, prefect_api_url)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]

    tracking = tracking_for(load_config(crashed_cfg))
    runs = tracking.client().search_runs([tracking.experiment_id()], max_results=1000)
    trained = [r for r in runs if r.data.tags.get(KIND_TAG) == "unit" and r.info.status == "FINISHED"
               and r.data.tags.get("reused") != "true" and r.data.tags["stage"] in ("sources", "transfer")]
    keys = [r.data.tags["unit_key"] for r in trained]
    assert len(keys) == len(set(keys)), "a finished unit was trained twice"
    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "pipeline"]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]

    clean = _start(clean_cfg, tmp_path, prefect_api_url)
    assert clean.wait(timeout=600) == 0
    after_crash = comparison_table(tracking).set_index(["stage", "task", "method"])[METRICS].sort_index()
    uninterrupted = comparison_table(tracking_for(load_config(clean_cfg)))
    uninterrupted = uninterrupted.set_index(["stage", "task", "method"])[METRICS].sort_index()
    assert after_crash.equals(uninterrupted), f"{after_crash}\n{uninterrupted}"


def test_sigterm_mid_unit_stops_the_run_within_seconds(tiny_config, tmp_path, prefect_api_url):
    """Units train in worker threads, which nothing can cancel from outside: a stopped run tells them
    to stop at their next step, instead of staying until each has trained to its end (minutes here)."""
    base, _ = tiny_config()
    cfg = yaml.safe_load(base.read_text())
    cfg["training"]["sources"] |= {"epochs": 2, "max_steps": 40000}  # far longer than the test waits
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    process = _start(path, tmp_path, prefect_api_url)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while not any("(sources)" in line and " step " in line for line in lines):
        assert time.time() < deadline and process.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGTERM)
    stopped = time.time()
    try:
        process.wait(timeout=60)
    finally:
        _kill_group(process)
    assert time.time() - stopped < 30, "".join(lines)[-3000:]
    reader.join(timeout=10)
    tracking = tracking_for(load_config(path))
    units = [r for r in tracking.client().search_runs([tracking.experiment_id()]) if r.data.tags.get(KIND_TAG) == "unit"]
    assert units and all(r.info.status == "FAILED" for r in units), [(r.data.tags, r.info.status) for r in units]
