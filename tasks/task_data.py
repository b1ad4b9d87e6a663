"""A task's splits under a config (what `prepare_task_data` stores and `adapterflow tasks --check`
shows), and the key of what they are made from. Neither Prefect nor torch: the CLI checks data with it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Literal

from peft_core.compute_versions import code_digest
from peft_core.data import few_shot, load_task_data
from peft_core.data.readers import content_digest
from peft_core.data.types import DatasetSplits
from tasks.config import PipelineConfig

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
