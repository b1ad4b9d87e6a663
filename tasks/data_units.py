"""Prefect task: load a task's data, apply the split convention, store the prepared splits."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.config import PipelineConfig
from peft_core.data import load_task_data
from peft_core.task_specs import get_task
from tasks.prepared_data import save_splits
from tasks.common import unit_logger


@task(name="prepare_task_data", cache_policy=NO_CACHE)
def prepare_task_data(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"]) -> dict:
    """Prepared splits of one task as a folder keyed by their content digest."""
    data = cfg.data
    cap = data.train_cap(task_name)
    if role == "target" and data.max_train_targets:
        cap = min(cap or data.max_train_targets, data.max_train_targets)
    splits = load_task_data(get_task(task_name), data.source, data.resolved_path(), data.split, data.seed, cap, data.max_eval)
    digest = splits.digest()
    folder = cfg.home_dir() / "data" / f"{task_name}-{digest}"
    if not (folder / "manifest.json").exists():
        save_splits(folder, splits)
    sizes = {n: len(splits.split(n)) for n in ("train", "validation", "test")}
    unit_logger().info("prepared %s (%s): %s, digest %s", task_name, role, sizes, digest)
    return {"task": task_name, "role": role, "folder": str(folder), "digest": digest, "sizes": sizes}
