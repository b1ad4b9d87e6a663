"""Task data: load labelled files, split them by a convention, tokenise and batch them.

    splits = load_task_data(get_task("rte"), "local", "../shared/data/glue", max_train=2000)
    train = EncodedSplit.from_examples(spec, splits.train, tokenizer, max_length=128)
    for batch in train.batches(32, shuffle=True, seed=42, epoch=0): ...
"""

from __future__ import annotations

from pathlib import Path

from peft_core.data.encoding import EncodedSplit, collate, encode_examples, make_batches
from peft_core.data.loaders import Source, load_raw
from peft_core.data.splits import Convention, apply_split, few_shot
from peft_core.data.types import DatasetSplits, Example, digest_examples
from peft_core.task_specs import TaskSpec


def load_task_data(
    spec: TaskSpec,
    source: Source,
    path: Path | str | None = None,
    convention: Convention = "scalearn",
    seed: int = 42,
    max_train: int | None = None,
    max_eval: int | None = None,
) -> DatasetSplits:
    """`load_raw` followed by `apply_split`."""
    return apply_split(spec, load_raw(spec, source, path), convention, seed, max_train, max_eval)


__all__ = [
    "DatasetSplits",
    "EncodedSplit",
    "Example",
    "apply_split",
    "collate",
    "digest_examples",
    "encode_examples",
    "few_shot",
    "load_raw",
    "load_task_data",
    "make_batches",
]
