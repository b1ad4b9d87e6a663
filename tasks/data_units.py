"""Prefect task: load a task's data as its declaration says, apply the split convention, store the
prepared splits (keyed by their content digest, the spec included)."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common import unit_logger
from tasks.config import PipelineConfig
from tasks.prepared_data import SPLITS, index_preparation, indexed_preparation, save_splits
from tasks.task_data import source_key, task_splits
from tasks.unit_specs import PreparedData


def _prepare_run_name(parameters: dict) -> str:
    seed = parameters.get("seed")
    return f"prepare_task_data {parameters['task_name']} ({parameters['role']}){f' seed {seed}' if seed is not None else ''}"


@task(name="prepare_task_data", cache_policy=NO_CACHE, task_run_name=_prepare_run_name)
def prepare_task_data(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"],
                      seed: int | None = None) -> PreparedData:
    """`task_splits` stored as a folder keyed by their content digest; files prepared before with the
    same content and settings are not read again."""
    data_dir = cfg.home_dir() / "data"
    key = source_key(cfg, task_name, role, seed)
    info = indexed_preparation(data_dir, key) if key else None
    if info is None:
        splits = task_splits(cfg, task_name, role, seed)
        lines = splits.lines()  # serialised once, for the digest and the files
        digest = splits.digest()
        folder = data_dir / f"{task_name}-{digest}"
        if not (folder / "manifest.json").exists():
            save_splits(folder, splits, lines)
        info = {"task": task_name, "folder": str(folder), "digest": digest, "spec": splits.spec.to_json(),
                "sizes": {n: len(splits.split(n)) for n in SPLITS}}
        if key:
            index_preparation(data_dir, key, info)
    unit_logger().info("prepared %s (%s%s): %s, digest %s", task_name, role,
                       f", seed {seed}" if seed is not None else "", info["sizes"], info["digest"])
    return PreparedData(task=task_name, folder=info["folder"], digest=info["digest"], spec=info["spec"],
                        sizes=info["sizes"], role=role, seed=seed)
