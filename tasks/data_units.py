"""Prefect task: load a task's data, apply the split convention, store the prepared splits."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from peft_core.data import few_shot, load_task_data
from peft_core.data.types import DatasetSplits
from peft_core.task_specs import get_task
from tasks.prepared_data import save_splits
from tasks.common import unit_logger


def task_splits(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"],
                seed: int | None = None) -> DatasetSplits:
    """One task's splits under the config's data settings: its caps, its split convention, and for a
    target under `data.few_shot` the k-shot sample of `seed` (each seed its own sample)."""
    data = cfg.data
    spec = get_task(task_name)
    cap = data.train_cap(task_name)
    if role == "target" and data.max_train_targets:
        cap = min(cap or data.max_train_targets, data.max_train_targets)
    splits = load_task_data(spec, data.source, data.resolved_path(), data.split, data.seed, cap, data.max_eval)
    if role == "target" and data.few_shot is not None:
        shot = data.few_shot
        splits = few_shot(spec, splits, shot.k, seed, per_label=shot.per_label, validation_k=shot.validation_k)
    return splits


@task(name="prepare_task_data", cache_policy=NO_CACHE)
def prepare_task_data(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"],
                      seed: int | None = None) -> dict:
    """`task_splits` stored as a folder keyed by their content digest."""
    splits = task_splits(cfg, task_name, role, seed)
    digest = splits.digest()
    folder = cfg.home_dir() / "data" / f"{task_name}-{digest}"
    if not (folder / "manifest.json").exists():
        save_splits(folder, splits)
    sizes = {n: len(splits.split(n)) for n in ("train", "validation", "test")}
    unit_logger().info("prepared %s (%s%s): %s, digest %s", task_name, role,
                       f", seed {seed}" if seed is not None else "", sizes, digest)
    return {"task": task_name, "role": role, "folder": str(folder), "digest": digest, "sizes": sizes, "seed": seed}
