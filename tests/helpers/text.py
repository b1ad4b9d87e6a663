"""A tiny random T5 loaded for text and small text-to-text tasks, for the text-to-text tests."""

from __future__ import annotations

import torch

from peft_core.backbones import Backbone, wrap_backbone
from peft_core.data.types import DatasetSplits, Example
from peft_core.task_specs import TaskSpec, get_task
from tests.helpers.core import SPECIAL_TOKENS, WORDS, family_model, make_tokenizer, sentiment_examples

NUMBERS = [*"0123456789", ".", "-"]
WORDY = TaskSpec(name="sentiment_words", benchmark="declared", problem="classification", text_fields=("sentence",),
                 label_names=("bad", "good"), metrics=("accuracy", "f1"), description="Is the review good or bad?")
SIMILARITY = get_task("demo_similarity")


def make_text_tokenizer(folder):
    """T5's tokenizer stand-in: the tests' words, and the characters numbers are written with."""
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + WORDS + NUMBERS) + "\n")
    return make_tokenizer(path, "t5")


def text_backbone(tokenizer, output: str = "text") -> Backbone:
    torch.manual_seed(0)
    return wrap_backbone("tiny-t5", family_model("t5", output).eval(), tokenizer, output=output)


def wordy_splits(n_train: int = 16) -> DatasetSplits:
    return DatasetSplits(WORDY, sentiment_examples(n_train), sentiment_examples(8, 1), sentiment_examples(8, 2))


def similarity_splits() -> DatasetSplits:
    words = ["the film was good", "the meal was bad", "the show was dull", "we liked the book"]
    pairs = [Example((words[i % 4], words[(i * 3 + 1) % 4]), round((i * 0.37) % 5, 2)) for i in range(24)]
    return DatasetSplits(SIMILARITY, pairs[:16], pairs[16:20], pairs[20:])
