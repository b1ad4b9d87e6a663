"""The task runner the config asks for, and torch threads sized so parallel units share the cores."""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os

import torch
from prefect import get_client
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ThreadPoolTaskRunner

from flows import logging_filters
from flows.config import PipelineConfig
from peft_core.errors import ConfigError


def _threads_per_unit(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def make_task_runner(cfg: PipelineConfig):
    runner = cfg.runner
    if runner.kind == "threads":
        # Each unit's matrix multiplies use all torch threads; share the cores among the workers.
        torch.set_num_threads(_threads_per_unit(runner.workers))
        return ThreadPoolTaskRunner(max_workers=runner.workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("runner.kind 'dask' needs prefect-dask; `pip install prefect-dask` or use kind: threads") from None
    if runner.address:
        _check_scheduler(runner.address)
        return DaskTaskRunner(address=runner.address)
    # Units in the worker processes report to this process's Prefect API; get_client starts the
    # temporary local server now if that is what this process uses.
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(address=_local_cluster(runner.workers, api_url).scheduler_address)


@functools.cache
def _local_cluster(workers: int, api_url: str):
    """One local cluster per process, shared by every stage (its workers import torch once).

    Workers inherit this process's environment (PREFECT_HOME, ADAPTERFLOW_HOME, MLflow URI) and
    working directory; the cluster closes when the process exits.
    """
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would fill the console
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env={"PREFECT_API_URL": api_url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    with Client(cluster) as client:
        client.register_plugin(_worker_setup(_threads_per_unit(workers), logging_filters.shown_by_cli()))
    atexit.register(cluster.close)  # before the temporary Prefect server stops (registered earlier)
    return cluster


def _worker_setup(threads: int, errors_shown_by_cli: bool):
    """A Dask worker plugin: the worker's share of the cores for torch, one-line user errors in its logs
    (none, under the CLI: the worker's console is the CLI's, which prints them last)."""
    from distributed import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        def setup(self, worker) -> None:
            torch.set_num_threads(threads)
            logging.getLogger("distributed").setLevel(logging.WARNING)
            logging_filters.install(shown_by_cli=errors_shown_by_cli)

        def teardown(self, worker) -> None:
            # The worker is closing. distributed kills it if it has not exited 4 s later, and the final
            # garbage collection over torch and transformers objects can take longer: skip it.
            gc.freeze()

    return WorkerSetup()


def _check_scheduler(address: str) -> None:
    """One clear line when the scheduler is not there, or its workers (their own processes, with their
    own environment) would have no Prefect server to report to."""
    from distributed import Client

    try:
        Client(address, timeout=5).close()
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"runner.address {address!r}: no Dask scheduler reachable there "
                          f"({str(exc).splitlines()[0]}); start one (`dask scheduler`) or remove runner.address "
                          "for a local cluster") from None
    if not PREFECT_API_URL.value():
        raise ConfigError(f"runner.address {address!r}: the Dask workers need a Prefect server they can reach; "
                          "start one (`prefect server start`) and set PREFECT_API_URL here and on the workers")
