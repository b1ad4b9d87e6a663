"""The task runner the config asks for, and torch threads sized so parallel units share the cores."""

from __future__ import annotations

import os

import torch
from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import PipelineConfig
from peft_core.errors import ConfigError


def make_task_runner(cfg: PipelineConfig):
    runner = cfg.runner
    if runner.kind == "threads":
        # Each unit's matrix multiplies use all torch threads; share the cores among the workers.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // runner.workers))
        return ThreadPoolTaskRunner(max_workers=runner.workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("runner.kind 'dask' needs prefect-dask; `pip install prefect-dask` or use kind: threads") from None
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1, "processes": True})
