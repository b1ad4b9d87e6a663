"""Split conventions (METHODS §4): turn a task's labelled file sets into train / validation / test.

- "scalearn": validation = 10 % of train (stratified), test = the original dev set.
- "hyperformer" (also PEMT): dev sets under 10,000 examples are halved into validation and test;
  larger ones stay the test set and 1,000 training examples become validation. Unlike the
  papers' code, validation examples never go back into train.
- These conventions apply to a task that gives train and test (GLUE's and SuperGLUE's labelled dev
  file is their test). A task that gives its validation split keeps it; one without test then
  holds 10 % of train out as test. A task with a single pool of labelled rows (`data.all`, or
  train alone: MNLI, QNLI, QQP in ../shared/data/glue, the public BoolQ release) is split by a
  seeded rule: 10 % test, then 10 % of the rest validation.
- `sample_k_shot` then turns a split into a low-resource one: k training and k validation examples
  drawn, label-balanced, from the training file's examples; test is kept whole.

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
    """Split `raw` (`load_raw`'s examples: "train", "validation", "test", or one pool "all") by
    `convention` where it leaves validation or test open, then apply the caps."""
    if convention not in ("scalearn", "hyperformer"):
        raise ConfigError(f"unknown split convention {convention!r}; use 'scalearn' or 'hyperformer'")
    for cap_name, cap in (("max_train", max_train), ("max_eval", max_eval)):
        if cap is not None and cap < 1:
            raise ConfigError(f"{cap_name} is {cap}; use a positive number or None for no cap")
    stratify = not spec.is_regression
    given = {name: examples for name, examples in raw.items() if examples}
    if not given:
        raise DataError(f"task {spec.name}: no labelled examples were loaded; check its data files or source")
    pool = given.get("all") or (given["train"] if set(given) == {"train"} else None)
    if pool is not None:
        rest, test = _hold_out(pool, math.ceil(VALIDATION_FRACTION * len(pool)), seed, stratify, purpose="test")
        train, validation = _hold_out(rest, math.ceil(VALIDATION_FRACTION * len(rest)), seed, stratify)
    elif "train" not in given:
        raise DataError(f"task {spec.name} has {' and '.join(given)} rows but no train split; declare its data.train "
                        "(or one file for every split as data.all)")
    elif "validation" in given:
        train, validation = given["train"], given["validation"]
        test = given.get("test")
        if test is None:
            train, test = _hold_out(train, math.ceil(VALIDATION_FRACTION * len(train)), seed, stratify, purpose="test")
    elif convention == "scalearn" or len(given["test"]) < HYPERFORMER_SMALL_DEV:
        test = given["test"]
        if convention == "scalearn":
            train, validation = _hold_out(given["train"], math.ceil(VALIDATION_FRACTION * len(given["train"])), seed,
                                          stratify)
        else:
            train = given["train"]
            test, validation = _hold_out(test, len(test) // 2, seed, stratify)
    else:
        train, validation = _hold_out(given["train"], HYPERFORMER_VALIDATION_SIZE, seed, stratify)
        test = given["test"]

    splits = DatasetSplits(
        spec=spec,
        train=_cap(train, max_train, seed, stratify),
        validation=_cap(validation, max_eval, seed, stratify),
        test=_cap(test, max_eval, seed, stratify),
    )
    _check_usable(spec, splits, convention)
    return splits


def _check_usable(spec: TaskSpec, splits: DatasetSplits, convention: str) -> None:
    sizes = ", ".join(f"{len(splits.split(n))} {n}" for n in ("train", "validation", "test"))
    for name in ("train", "validation", "test"):
        if not splits.split(name):
            raise DataError(
                f"task {spec.name}: the {name} split is empty under the {convention!r} convention ({sizes} "
                "examples); provide more labelled examples, a file for that split, or raise max_train/max_eval"
            )
    if not spec.is_regression and len({ex.label for ex in splits.train}) < 2:
        only = spec.label_names[splits.train[0].label]
        raise DataError(f"task {spec.name}: every training example has label {only!r}; a classifier needs at least "
                        "two labels in train: add examples of the others (or check the split's files)")


def sample_k_shot(spec: TaskSpec, splits: DatasetSplits, k: int, seed: int, *, per_label: bool = False,
             validation_k: int | None = None) -> DatasetSplits:
    """k training examples (k per label with `per_label`) and `validation_k` (default: as many)
    validation examples, drawn label-balanced for classification from train + validation (both
    come from the training file), seeded; the test split is kept whole."""
    pool = splits.train + splits.validation
    labels = None if spec.is_regression else sorted({ex.label for ex in pool})
    train_size = k * len(labels) if per_label and labels else k
    held_size = validation_k or train_size
    rng = random.Random(f"{seed}:few-shot")
    train_idx = _balanced_indices(spec, pool, train_size, rng, "training")
    taken = set(train_idx)
    rest = [i for i in range(len(pool)) if i not in taken]
    validation_idx = [rest[i] for i in _balanced_indices(spec, [pool[i] for i in rest], held_size, rng, "validation")]
    return DatasetSplits(spec=spec, train=[pool[i] for i in sorted(train_idx)],
                         validation=[pool[i] for i in sorted(validation_idx)], test=splits.test)


def _balanced_indices(spec: TaskSpec, examples: list[Example], size: int, rng: random.Random, purpose: str) -> list[int]:
    """`size` indices, as equal a share per label as whole numbers allow (any `size` for regression)."""
    if size > len(examples):
        raise DataError(f"task {spec.name}: the k-shot sample asks for {size} {purpose} examples but only {len(examples)} "
                        "are left in its training data; lower data.few_shot.k (or validation_k)")
    if spec.is_regression:
        return rng.sample(range(len(examples)), size)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex.label].append(i)
    labels = sorted(by_label)
    quotas = [size // len(labels) + (1 if j < size % len(labels) else 0) for j in range(len(labels))]
    order = rng.sample(labels, len(labels))  # which labels get the remainder is seeded, not always the first
    chosen = []
    for label, quota in zip(order, quotas):
        if quota > len(by_label[label]):
            name = spec.label_names[label] if spec.label_names else label
            raise DataError(f"task {spec.name}: the k-shot sample needs {quota} {purpose} examples of label '{name}' but its "
                            f"training data has {len(by_label[label])} left; lower data.few_shot.k")
        chosen += rng.sample(by_label[label], quota)
    return chosen


def _hold_out(examples: list[Example], size: int, seed: int, stratify: bool,
              purpose: str = "hold-out") -> tuple[list[Example], list[Example]]:
    """(rest, held_out) with `size` examples held out; both keep the input order."""
    held = set(_draw_indices(examples, min(size, len(examples)), random.Random(f"{seed}:{purpose}"), stratify))
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
