"""Split conventions (METHODS §4): turn a task's labelled file sets into train / validation / test.

- "scalearn": validation = 10 % of train (stratified), test = the original dev set.
- "hyperformer" (also PEMT): dev sets under 10,000 examples are halved into validation and test;
  larger ones stay the test set and 1,000 training examples become validation. Unlike the
  papers' code, validation examples never go back into train.
- Either way, a task with a single labelled file set (MNLI, QNLI, QQP in ../shared/data/glue) is
  split 90/10 into train/validation and has no test set.

Held-out draws are stratified by label for classification and seeded; every split keeps the
file order of its examples. Caps (`max_train`, `max_eval`) are drawn after the split.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Literal

from peft_core.data.types import DatasetSplits, Example
from peft_core.errors import ConfigError, DataError
from peft_core.task_specs import TaskSpec

Convention = Literal["scalearn", "hyperformer"]

VALIDATION_FRACTION = 0.1
HYPERFORMER_SMALL_DEV = 10_000
HYPERFORMER_VALIDATION_SIZE = 1_000


def apply_split(
    spec: TaskSpec,
    raw: dict[str, list[Example]],
    convention: Convention = "scalearn",
    seed: int = 42,
    max_train: int | None = None,
    max_eval: int | None = None,
) -> DatasetSplits:
    """Split `raw` ("train" and/or "dev" from `load_raw`) by `convention`, then apply the caps."""
    if convention not in ("scalearn", "hyperformer"):
        raise ConfigError(f"unknown split convention {convention!r}; use 'scalearn' or 'hyperformer'")
    for cap_name, cap in (("max_train", max_train), ("max_eval", max_eval)):
        if cap is not None and cap < 1:
            raise ConfigError(f"{cap_name} is {cap}; use a positive number or None for no cap")
    stratify = not spec.is_regression
    file_sets = [name for name in ("train", "dev") if raw.get(name)]

    if not file_sets:
        raise DataError(f"task {spec.name}: no labelled examples were loaded; check the data folder or source")
    if len(file_sets) == 1:
        pool = raw[file_sets[0]]
        train, validation = _hold_out(pool, math.ceil(VALIDATION_FRACTION * len(pool)), seed, stratify)
        test: list[Example] = []
    elif convention == "scalearn":
        train_pool = raw["train"]
        train, validation = _hold_out(train_pool, math.ceil(VALIDATION_FRACTION * len(train_pool)), seed, stratify)
        test = raw["dev"]
    elif len(raw["dev"]) < HYPERFORMER_SMALL_DEV:
        train = raw["train"]
        test, validation = _hold_out(raw["dev"], len(raw["dev"]) // 2, seed, stratify)
    else:
        train, validation = _hold_out(raw["train"], HYPERFORMER_VALIDATION_SIZE, seed, stratify)
        test = raw["dev"]

    splits = DatasetSplits(
        task=spec.name,
        train=_cap(train, max_train, seed, stratify),
        validation=_cap(validation, max_eval, seed, stratify),
        test=_cap(test, max_eval, seed, stratify),
    )
    _check_not_empty(spec, splits, convention)
    return splits


def _check_not_empty(spec: TaskSpec, splits: DatasetSplits, convention: str) -> None:
    for name in ("train", "validation"):
        if not splits.split(name):
            raise DataError(
                f"task {spec.name}: the {name} split is empty under the {convention!r} convention "
                f"({len(splits.train)} train / {len(splits.validation)} validation examples); "
                "provide more labelled examples or raise max_train/max_eval"
            )


def _hold_out(examples: list[Example], size: int, seed: int, stratify: bool) -> tuple[list[Example], list[Example]]:
    """(rest, held_out) with `size` examples held out; both keep the input order."""
    held = set(_draw_indices(examples, min(size, len(examples)), random.Random(f"{seed}:hold-out"), stratify))
    rest = [ex for i, ex in enumerate(examples) if i not in held]
    return rest, [ex for i, ex in enumerate(examples) if i in held]


def _cap(examples: list[Example], cap: int | None, seed: int, stratify: bool) -> list[Example]:
    if cap is None or len(examples) <= cap:
        return examples
    kept = set(_draw_indices(examples, cap, random.Random(f"{seed}:cap"), stratify))
    return [ex for i, ex in enumerate(examples) if i in kept]


def _draw_indices(examples: list[Example], size: int, rng: random.Random, stratify: bool) -> list[int]:
    """`size` indices drawn at random; with `stratify`, each label gets its proportional share."""
    if not stratify:
        return rng.sample(range(len(examples)), size)
    by_label: dict[int | float, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex.label].append(i)
    labels = sorted(by_label)
    quotas = _largest_remainder_quotas([len(by_label[label]) for label in labels], size)
    return [i for label, quota in zip(labels, quotas) for i in rng.sample(by_label[label], quota)]


def _largest_remainder_quotas(counts: list[int], size: int) -> list[int]:
    """Split `size` over groups in proportion to `counts`, in whole numbers that sum to `size`."""
    total = sum(counts)
    exact = [size * c / total for c in counts]
    quotas = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda g: (quotas[g] - exact[g], g))
    for g in by_remainder[: size - sum(quotas)]:
        quotas[g] += 1
    return quotas
