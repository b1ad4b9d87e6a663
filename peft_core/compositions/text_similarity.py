"""How alike two tasks' training text is: what AdapterSoup chooses its sources by (METHODS §3).

    similarities = text_similarities(backbone, rte_train, [mnli_train, sst2_train], sample_size=1000,
                                     max_length=128)  # one number per source, in [-1, 1]

The protocol of ScaLearn's comparison (CPJKU/ScaLearn, `src/scripts/soup/calculate_sentsim_*.py`):
a seeded sample of each task's training examples, an example's text fields joined by a space, is
embedded by a sentence encoder; a source scores the mean cosine similarity over every (source
example, target example) pair. The encoder here is the backbone itself, its last hidden states
pooled as its task heads read them: mean-pooled over the attention mask for an encoder, how
all-MiniLM-L6-v2 (the default backbone, a sentence encoder) is meant to be used; a decoder's last token. ScaLearn used all-mpnet-base-v2 and 10,000 examples a task.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..backbones import Backbone
from ..data.types import Example

SAMPLE_SEED = 42  # the sample of a task's examples is the same for every fit (ScaLearn's seed)
EMBEDDING_BATCH = 64


@dataclass(frozen=True)
class SourceTexts:
    """What a method that chooses among a fit's sources looks at: the target's training examples
    and each source's (None where the caller gave none), by source name and task."""

    backbone: Backbone
    target: str
    target_examples: Sequence[Example]
    source_names: Sequence[str]
    source_tasks: Sequence[str]
    source_examples: Sequence[Sequence[Example]] | None
    max_length: int


def example_text(example: Example) -> str:
    return " ".join(example.texts)


def text_sample(examples: Sequence[Example], size: int, seed: int = SAMPLE_SEED) -> list[str]:
    """The texts of at most `size` examples, drawn with `seed` (all of them when there are fewer)."""
    chosen = sorted(random.Random(seed).sample(range(len(examples)), min(size, len(examples))))
    return [example_text(examples[i]) for i in chosen]


@torch.no_grad()
def sentence_embeddings(backbone: Backbone, texts: Sequence[str], max_length: int,
                        batch_size: int = EMBEDDING_BATCH) -> torch.Tensor:
    """(n, d): each text's last hidden states pooled as the backbone's task heads read them (the mean
    over its tokens, a decoder's last token), in the order given. Texts are batched by length so that
    little padding is computed."""
    model = backbone.model
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    pooled = torch.empty(len(texts), backbone.hidden_size)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = backbone.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state.float()
            pooled[rows] = backbone.pool(hidden, batch["attention_mask"]).cpu()
    finally:
        model.train(was_training)
    return pooled


def mean_pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean of cos(a_i, b_j) over every row i of `a` and row j of `b`: the dot product of the
    means of the unit-length rows."""
    def mean_direction(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x.double(), dim=-1).mean(0)

    return float(mean_direction(a) @ mean_direction(b))


def text_similarities(backbone: Backbone, target_examples: Sequence[Example],
                      source_examples: Sequence[Sequence[Example]], sample_size: int, max_length: int) -> list[float]:
    """Each source's `mean_pairwise_cosine` with the target, over a seeded sample of at most
    `sample_size` training examples of each."""
    target = sentence_embeddings(backbone, text_sample(target_examples, sample_size), max_length)
    return [mean_pairwise_cosine(sentence_embeddings(backbone, text_sample(examples, sample_size), max_length), target)
            for examples in source_examples]
