"""How alike two tasks' training text is (AdapterSoup's choice of sources), against hand-computed values."""

import math

import pytest
import torch

from peft_core.compositions.text_similarity import (
    mean_pairwise_cosine, sentence_embeddings, text_sample, text_similarities,
)
from peft_core.data.types import Example

from tests.helpers.core import sentiment_splits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mean_pairwise_cosine_against_a_hand_computed_reference():
    # cos((3, 4), (4, 3)) = 24 / 25 = 0.96 and cos((3, 4), (0, -2)) = -8 / 10 = -0.8: their mean is 0.08
    assert mean_pairwise_cosine(torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0], [0.0, -2.0]])) == \
        pytest.approx(0.08)
    # every pair of (1, 0), (0, 1) with (1, 1): 1 / sqrt(2) each; the lengths do not count
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 5.0]]), torch.tensor([[2.0, 2.0]])) == \
        pytest.approx(1 / math.sqrt(2))
    # the same as the mean over all pairs, computed pair by pair, for any rows
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(3, 7)
    pairwise = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1).mean()
    assert mean_pairwise_cosine(a, b) == pytest.approx(float(pairwise), abs=1e-6)


def test_a_sentence_embedding_is_the_mean_of_its_tokens_hidden_states(tiny_backbone):
    """Batched with padding, in any order: each text's embedding is the mean over its own tokens of
    the last hidden states it gets alone."""
    backbone = tiny_backbone()
    texts = ["the film was good", "we hated it", "a lovely and nice superb song was it", "bad"]
    pooled = sentence_embeddings(backbone, texts, max_length=24, batch_size=3)
    assert pooled.shape == (4, backbone.hidden_size)
    for text, row in zip(texts, pooled):
        alone = backbone.tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            expected = backbone.model(**alone).last_hidden_state[0].mean(0)
        torch.testing.assert_close(row, expected, rtol=1e-5, atol=1e-5)


def test_the_sample_is_seeded_bounded_and_joins_an_examples_fields():
    examples = [Example((f"premise {i}", f"hypothesis {i}"), 0) for i in range(50)]
    sample = text_sample(examples, 10)
    assert len(sample) == 10 and sample == text_sample(examples, 10) and sample != text_sample(examples, 10, seed=1)
    assert all(t.startswith("premise ") and " hypothesis " in t for t in sample)
    assert text_sample(examples[:3], 10) == ["premise 0 hypothesis 0", "premise 1 hypothesis 1", "premise 2 hypothesis 2"]


def test_text_similarities_score_each_source_against_the_target(tiny_backbone):
    backbone = tiny_backbone()
    target, same, other = sentiment_splits(12, 4, seed=1).train, sentiment_splits(12, 4, seed=1).train, \
        [Example(("z y x w v",), 0)] * 6
    similarities = text_similarities(backbone, target, [same, other], sample_size=100, max_length=24)

    def embed(examples):
        return sentence_embeddings(backbone, text_sample(examples, 100), 24)

    assert similarities == pytest.approx([mean_pairwise_cosine(embed(same), embed(target)),
                                          mean_pairwise_cosine(embed(other), embed(target))])
    assert similarities[0] > similarities[1]  # a task is closest to itself
