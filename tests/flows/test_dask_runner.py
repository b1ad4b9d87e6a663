"""The Dask task runner: units run in separate worker processes and still find every store."""

from __future__ import annotations

import os

import pytest
from distributed import LocalCluster
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.config import load_config
from flows.runners import make_task_runner
from flows.stages import run_stage
from peft_core.errors import ConfigError
from tasks.run_liveness import PID_TAG
from tasks.tracking import KIND_TAG
from flows.store import tracking_for


def test_sources_stage_runs_each_unit_in_its_own_dask_worker(prefect_api, tiny_config):
    path, _ = tiny_config(name="dask", runner={"kind": "dask", "workers": 2})
    cfg = load_config(path)
    units = run_stage(cfg, "sources")

    tracking = tracking_for(cfg)
    client = tracking.client()
    runs = client.search_runs([tracking.experiment_id()], f"tags.`{KIND_TAG}` = 'unit'", max_results=100)
    assert sorted(r.data.tags["task"] for r in runs) == ["demo_nli", "demo_sentiment"]
    assert {u.run_id for u in units} == {r.info.run_id for r in runs}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(run.info.run_id, "adapter")} == {
            "adapter/adapter_config.json", "adapter/adapter.safetensors"}
    pids = {r.data.tags[PID_TAG] for r in runs}  # the process each unit ran in
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_existing_scheduler_runs_a_stage(prefect_api, tiny_config):
    path, _ = tiny_config(name="dask-address")
    with LocalCluster(n_workers=1, processes=False) as cluster:
        cfg = load_config(path, **{"runner.kind": "dask", "runner.address": cluster.scheduler_address})
        prepared = run_stage(cfg, "prepare")
        assert set(prepared["source"]) == {"demo_sentiment", "demo_nli"}
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            with pytest.raises(ConfigError, match=r"^runner\.address .*need a Prefect server .*PREFECT_API_URL"):
                make_task_runner(cfg)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "no-such-protocol://x"])
def test_unreachable_scheduler_names_the_field(tiny_config, address):
    path, _ = tiny_config(runner={"kind": "dask", "address": address})
    with pytest.raises(ConfigError, match=r"^runner\.address .*no Dask scheduler") as err:
        make_task_runner(load_config(path))
    assert "\n" not in str(err.value)


def test_address_without_dask_is_refused(tiny_config):
    path, _ = tiny_config(runner={"kind": "threads", "address": "tcp://127.0.0.1:8786"})
    with pytest.raises(ConfigError, match=r"field 'runner': runner\.address needs runner\.kind: dask"):
        load_config(path)
