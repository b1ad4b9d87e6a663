"""A task's splits as a recipe says (what `prepare_task_data` stores and `adapterflow tasks --check`
shows), and the key of what they are made from. Neither Prefect nor torch: the CLI checks data with it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from peft_core.compute_versions import code_digest
from peft_core.data import load_task_data, sample_k_shot
from peft_core.data.readers import content_digest
from peft_core.data.types import DatasetSplits
from peft_core.task_specs import TaskDeclaration

# The modules whose code decides what a task's files yield: a preparation indexed by its source is
# reused only while they are unchanged.
Role = Literal["source", "target"]

PREPARING_CODE = ("task_specs.py", "data/readers.py", "data/loaders.py", "data/splits.py", "data/types.py")


@dataclass(frozen=True)
class KShotDraw:
    """k training examples (k per label with `per_label`) and `validation_k` validation examples,
    drawn per seed (the low-resource protocols)."""

    k: int
    per_label: bool = False
    validation_k: int | None = None


@dataclass(frozen=True)
class DataRecipe:
    """How one task's splits are made: where its rows come from (`declaration`), the split convention
    and its seed, the caps, and for a target under a few-shot protocol the draw of sample `seed`."""

    declaration: TaskDeclaration
    role: Role
    convention: str = "scalearn"
    split_seed: int = 42
    max_train: int | None = None
    max_eval: int | None = None
    k_shot: KShotDraw | None = None
    seed: int | None = None  # the target's sample seed (its unit seed)

    @property
    def task(self) -> str:
        return self.declaration.name

    def splits(self) -> DatasetSplits:
        splits = load_task_data(self.declaration, convention=self.convention, seed=self.split_seed,
                                max_train=self.max_train, max_eval=self.max_eval)
        if self.k_shot is not None:
            draw = self.k_shot
            splits = sample_k_shot(splits.spec, splits, draw.k, self.seed, per_label=draw.per_label,
                              validation_k=draw.validation_k)
        return splits

    def source_key(self) -> str | None:
        """What the splits are made from: the files' bytes, the recipe and the preparing code; None
        when its rows come from no files (hub, demo)."""
        files = [path for paths in self.declaration.data.files().values() for path in paths]
        if not files:
            return None
        payload = {"files": content_digest(files), "recipe": dataclasses.asdict(self),
                   "code": [code_digest(m) for m in PREPARING_CODE]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
