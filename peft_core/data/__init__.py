"""Task data: load a declared task's labelled rows, split them by a convention, tokenise and batch them.

    splits = load_task_data("rte", "local", "../shared/data/glue", max_train=2000)   # a built-in task
    splits = load_task_data(my_declaration)                                         # a TaskDeclaration
    train = EncodedSplit.from_examples(splits.spec, splits.train, tokenizer, max_length=128)
    for batch in train.batches(32, shuffle=True, seed=42, epoch=0): ...
"""

from __future__ import annotations

from pathlib import Path

from peft_core.data.loaders import RawTask, load_raw
from peft_core.data.splits import Convention, apply_split, sample_k_shot
from peft_core.data.types import DatasetSplits, Example, digest_examples
from peft_core.task_specs import Source, TaskDeclaration, TaskSpec, declaration_for_source


def load_task_data(
    task: TaskDeclaration | TaskSpec | str,
    source: Source = "local",
    path: Path | str | None = None,
    convention: Convention = "scalearn",
    seed: int = 42,
    max_train: int | None = None,
    max_eval: int | None = None,
) -> DatasetSplits:
    """`load_raw` followed by `apply_split`. A declaration is read from its own data; a built-in
    task (by name or spec) from `source`: its files under the folder `path`, the hub or the demo."""
    declaration = task if isinstance(task, TaskDeclaration) else declaration_for_source(task, source, path)
    raw = load_raw(declaration)
    return apply_split(raw.spec, raw.examples, convention, seed, max_train, max_eval)


_ENCODING = ("EncodedSplit", "collate", "encode_examples", "make_batches")


def __getattr__(name: str):
    """Tokenisation (torch) loads on first use, so reading and checking data (the CLI's `tasks
    --check`, config checks) stays free of torch."""
    if name in _ENCODING:
        from peft_core.data import encoding

        return getattr(encoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DatasetSplits",
    "EncodedSplit",
    "Example",
    "RawTask",
    "apply_split",
    "collate",
    "declaration_for_source",
    "digest_examples",
    "encode_examples",
    "sample_k_shot",
    "load_raw",
    "load_task_data",
    "make_batches",
]
