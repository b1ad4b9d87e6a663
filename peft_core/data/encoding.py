"""Tokenise a split once, then serve it in length-grouped, dynamically padded batches.

On CPU the backbone's matrix multiplies are the whole cost of training, so padding is wasted
work: batches hold examples of similar length and are padded only to their longest row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from peft_core.data.types import Example, digest_examples
from peft_core.errors import DataError
from peft_core.task_specs import TaskSpec

TOKENIZE_CHUNK = 1024
# Shuffled examples are sorted by length within windows of this many batches: enough to group
# lengths well, few enough that each epoch still mixes examples from the whole split.
BATCHES_PER_SORT_WINDOW = 50
_PADDED_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def encode_examples(spec: TaskSpec, examples: list[Example], tokenizer, max_length: int) -> list[dict]:
    """One unpadded row per example: token ids (+ masks) and `labels`.

    Multi-field inputs become a sentence pair: all fields but the last form the first segment.
    Multiple-choice rows hold one encoding per choice (lists of lists) and the right choice's index.
    """
    segments = [_segments(spec, ex) for ex in examples]
    encodings = _tokenize(tokenizer, [pair for pairs in segments for pair in pairs], max_length)
    rows, position = [], 0
    for example, pairs in zip(examples, segments):
        encoded = encodings[position : position + len(pairs)]
        position += len(pairs)
        if spec.problem == "multiple_choice":
            row = {key: [e[key] for e in encoded] for key in encoded[0]}
        else:
            row = dict(encoded[0])
        row["labels"] = float(example.label) if spec.is_regression else int(example.label)
        rows.append(row)
    return rows


def _segments(spec: TaskSpec, example: Example) -> list[tuple[str, str | None]]:
    if spec.problem == "multiple_choice":
        if len(example.choices) != spec.num_labels:
            raise DataError(
                f"task {spec.name}: an example has {len(example.choices)} choices, expected "
                f"{spec.num_labels} ({example.texts[0][:40]!r}...); fix the data"
            )
        context = " ".join(example.texts)
        return [(context, choice) for choice in example.choices]
    if len(example.texts) == 1:
        return [(example.texts[0], None)]
    return [(" ".join(example.texts[:-1]), example.texts[-1])]


def _tokenize(tokenizer, pairs: list[tuple[str, str | None]], max_length: int) -> list[dict]:
    rows = []
    for start in range(0, len(pairs), TOKENIZE_CHUNK):
        chunk = pairs[start : start + TOKENIZE_CHUNK]
        firsts = [first for first, _ in chunk]
        seconds = [second for _, second in chunk]
        encoded = tokenizer(
            firsts, None if seconds[0] is None else seconds, truncation=True, max_length=max_length
        )
        keys = [key for key in _PADDED_KEYS if key in encoded]
        rows.extend({key: encoded[key][i] for key in keys} for i in range(len(chunk)))
    return rows


def row_length(row: dict) -> int:
    """Tokens in a row (the longest choice for multiple choice)."""
    ids = row["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)


def make_batches(encoded: list[dict], batch_size: int, *, shuffle: bool, seed: int, epoch: int = 0) -> list[list[int]]:
    """Row indices per batch; every index appears exactly once.

    Evaluation (`shuffle=False`): rows sorted by length. Training: a seeded shuffle, sorted by
    length within windows of `BATCHES_PER_SORT_WINDOW` batches, cut into batches, and the batch
    order shuffled again; the same (seed, epoch) gives the same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = [row_length(row) for row in encoded]
    if not shuffle:
        return _cut(sorted(range(len(encoded)), key=lengths.__getitem__), batch_size)
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * BATCHES_PER_SORT_WINDOW
    batches = []
    for start in range(0, len(order), window):
        batches.extend(_cut(sorted(order[start : start + window], key=lengths.__getitem__), batch_size))
    rng.shuffle(batches)
    return batches


def _cut(indices: list[int], batch_size: int) -> list[list[int]]:
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def collate(encoded_rows: list[dict], tokenizer_pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row: (B, T) tensors, or (B, C, T) for multiple choice.

    `labels` become float32 when they are floats (regression, as `encode_examples` writes them)
    and int64 class indices otherwise.
    """
    batch = {
        key: _pad([row[key] for row in encoded_rows], tokenizer_pad_id if key == "input_ids" else 0)
        for key in _PADDED_KEYS
        if key in encoded_rows[0]
    }
    labels = [row["labels"] for row in encoded_rows]
    batch["labels"] = torch.tensor(labels, dtype=torch.float32 if isinstance(labels[0], float) else torch.long)
    return batch


def _pad(sequences: list, pad_value: int) -> torch.Tensor:
    multiple_choice = isinstance(sequences[0][0], list)
    groups = sequences if multiple_choice else [[s] for s in sequences]
    width = max(len(s) for group in groups for s in group)
    padded = torch.tensor([[s + [pad_value] * (width - len(s)) for s in group] for group in groups], dtype=torch.long)
    return padded if multiple_choice else padded[:, 0]


@dataclass
class EncodedSplit:
    """A tokenised split: its rows, the digest of the examples they came from, the pad id."""

    rows: list[dict]
    digest: str
    pad_id: int

    @classmethod
    def from_examples(cls, spec: TaskSpec, examples: list[Example], tokenizer, max_length: int) -> EncodedSplit:
        # Tokenizers without a pad token (rare for encoders) pad with 0: padded positions are
        # masked out by attention_mask, so the id itself never matters.
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(encode_examples(spec, examples, tokenizer, max_length), digest_examples(examples), pad_id)

    def __len__(self) -> int:
        return len(self.rows)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.rows) / batch_size)

    def batches(self, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Collated batches in `make_batches` order."""
        for indices in make_batches(self.rows, batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
            yield collate([self.rows[i] for i in indices], self.pad_id)
