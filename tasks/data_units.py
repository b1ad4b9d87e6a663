"""Prefect task: load a task's data as its declaration says, apply the split convention, store the
prepared splits (keyed by their content digest, the spec included)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from peft_core.compute_versions import code_digest
from peft_core.data import few_shot, load_task_data
from peft_core.data.readers import content_digest
from peft_core.data.types import DatasetSplits
from tasks.common import unit_logger
from tasks.config import PipelineConfig
from tasks.prepared_data import SPLITS, index_preparation, indexed_preparation, save_splits

# The modules whose code decides what a task's files yield: a preparation indexed by its source is
# reused only while they are unchanged.
PREPARING_CODE = ("task_specs.py", "data/readers.py", "data/loaders.py", "data/splits.py", "data/types.py")


def task_splits(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"],
                seed: int | None = None) -> DatasetSplits:
    """One task's splits under the config's data settings: its caps, its split convention, and for a
    target under `data.few_shot` the k-shot sample of `seed` (each seed its own sample)."""
    data = cfg.data
    cap = data.train_cap(task_name)
    if role == "target" and data.max_train_targets:
        cap = min(cap or data.max_train_targets, data.max_train_targets)
    splits = load_task_data(cfg.task_declaration(task_name), convention=data.split, seed=data.seed,
                            max_train=cap, max_eval=data.max_eval)
    if role == "target" and data.few_shot is not None:
        shot = data.few_shot
        splits = few_shot(splits.spec, splits, shot.k, seed, per_label=shot.per_label, validation_k=shot.validation_k)
    return splits


def source_key(cfg: PipelineConfig, task_name: str, role: str, seed: int | None) -> str | None:
    """What a task's prepared splits are made from: its files' bytes, its declaration, the data settings
    that apply to it and the preparing code; None when its rows come from no files (hub, demo)."""
    declaration = cfg.task_declaration(task_name)
    files = [path for paths in declaration.data.files().values() for path in paths]
    if not files:
        return None
    data = cfg.data
    payload = {"files": content_digest(files), "declaration": dataclasses.asdict(declaration), "role": role,
               "seed": seed if role == "target" and data.few_shot else None,
               "data": data.model_dump(exclude={"source", "path"}), "code": [code_digest(m) for m in PREPARING_CODE]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@task(name="prepare_task_data", cache_policy=NO_CACHE)
def prepare_task_data(cfg: PipelineConfig, task_name: str, role: Literal["source", "target"],
                      seed: int | None = None) -> dict:
    """`task_splits` stored as a folder keyed by their content digest; files prepared before with the
    same content and settings are not read again."""
    data_dir = cfg.home_dir() / "data"
    key = source_key(cfg, task_name, role, seed)
    info = indexed_preparation(data_dir, key) if key else None
    if info is None:
        splits = task_splits(cfg, task_name, role, seed)
        digest = splits.digest()
        folder = data_dir / f"{task_name}-{digest}"
        if not (folder / "manifest.json").exists():
            save_splits(folder, splits)
        info = {"task": task_name, "folder": str(folder), "digest": digest, "spec": splits.spec.to_json(),
                "sizes": {n: len(splits.split(n)) for n in SPLITS}}
        if key:
            index_preparation(data_dir, key, info)
    unit_logger().info("prepared %s (%s%s): %s, digest %s", task_name, role,
                       f", seed {seed}" if seed is not None else "", info["sizes"], info["digest"])
    return {**info, "role": role, "seed": seed}
