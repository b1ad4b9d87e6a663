"""Shared fixtures for the core-library tests: a tiny tokenizer, tiny random backbones of every
supported encoder family, and small example lists.

Nothing here is autouse, so other test modules in this folder are unaffected unless they ask.
"""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    AutoModel, BertConfig, BertTokenizerFast, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig,
)

from peft_core.backbones import Backbone, wrap_backbone
from peft_core.data.types import DatasetSplits, Example
from peft_core.task_specs import get_task

HIDDEN = 32
VOCAB_SIZE = 100
FAMILIES = ("bert", "roberta", "deberta-v2", "electra", "distilbert")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a film movie meal show book song was is it i we they liked hated and but "
    "good great fine nice lovely superb bad awful dull poor boring terrible "
    "not very really quite so"
).split()
POSITIVE = ("good", "great", "fine", "nice", "lovely", "superb")
NEGATIVE = ("bad", "awful", "dull", "poor", "boring", "terrible")
NOUNS = ("film", "movie", "meal", "show", "book", "song")


def family_config(family: str):
    """A 2-layer, 32-wide config of `family` (vocab 100, at most 64 positions)."""
    common = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
    if family == "bert":
        return BertConfig(**common)
    if family == "roberta":
        # Our tokenizer pads with id 0 and emits segment ids 0/1 for sentence pairs.
        return RobertaConfig(**common, pad_token_id=0, type_vocab_size=2)
    if family == "deberta-v2":
        return DebertaV2Config(**common)
    if family == "electra":
        return ElectraConfig(**common, embedding_size=HIDDEN)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=VOCAB_SIZE, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=64,
                                max_position_embeddings=64)
    raise ValueError(f"unknown family {family}")


def make_tokenizer(vocab_file, family: str = "bert"):
    # transformers 5's BertTokenizerFast silently ignores `vocab_file=` (every word becomes [UNK]);
    # the vocabulary goes in as `vocab=`, which accepts a path to a vocab.txt.
    # DistilBERT's forward takes no token_type_ids, so its tokenizer must not produce them.
    names = ["input_ids", "attention_mask"] if family == "distilbert" else ["input_ids", "token_type_ids", "attention_mask"]
    return BertTokenizerFast(vocab=str(vocab_file), model_input_names=names)


@pytest.fixture(scope="session")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n")
    assert len(SPECIAL_TOKENS + WORDS) <= VOCAB_SIZE
    return path


@pytest.fixture(scope="session")
def tokenizer(vocab_file):
    tok = make_tokenizer(vocab_file)
    assert tok.convert_tokens_to_ids("good") == SPECIAL_TOKENS.__len__() + WORDS.index("good")
    return tok


@pytest.fixture(scope="session")
def tiny_backbone(vocab_file):
    """Factory: `tiny_backbone(family, seed=0, name=None)` -> a fresh frozen Backbone.

    Each call builds a new model, so tests may mutate it freely; the same (family, seed) gives
    bit-identical weights.
    """

    def make(family: str = "bert", seed: int = 0, name: str | None = None) -> Backbone:
        torch.manual_seed(seed)
        model = AutoModel.from_config(family_config(family)).eval()
        return wrap_backbone(name or f"tiny-{family}", model, make_tokenizer(vocab_file, family))

    return make


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads; on a loaded machine waiting OpenMP threads slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sentiment_examples(n: int, seed: int = 0) -> list[Example]:
    """`the <noun> was [very] <adjective>`: label 1 for a positive adjective. Balanced, learnable."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        positive = i % 2 == 0
        words = ["the", rng.choice(NOUNS), "was"] + (["very"] if rng.random() < 0.3 else [])
        words.append(rng.choice(POSITIVE if positive else NEGATIVE))
        examples.append(Example((" ".join(words),), int(positive)))
    rng.shuffle(examples)
    return examples


def sentiment_splits(n_train: int = 32, n_eval: int = 16, seed: int = 0) -> DatasetSplits:
    return DatasetSplits(get_task("demo_sentiment"), sentiment_examples(n_train, seed), sentiment_examples(n_eval, seed + 1),
                         sentiment_examples(n_eval, seed + 2))


@pytest.fixture
def sentiment_data() -> DatasetSplits:
    """demo_sentiment splits: 32 train, 16 validation, 16 test."""
    return sentiment_splits()


@pytest.fixture
def nli_examples() -> list[Example]:
    """A handful of demo_nli (premise, hypothesis) examples with labels 0..2."""
    return [
        Example(("the film was good", "the film was great"), 0),
        Example(("the meal was bad", "the song was nice"), 1),
        Example(("the show was dull", "the show was superb"), 2),
        Example(("i liked the book", "the book was good"), 0),
        Example(("we hated it", "it was lovely"), 2),
        Example(("the movie was poor", "the meal was fine"), 1),
    ]


@pytest.fixture
def similarity_examples() -> list[Example]:
    """demo_similarity pairs with float scores in [0, 5]."""
    return [
        Example(("the film was good", "the film was great"), 4.5),
        Example(("the meal was bad", "the song was nice"), 0.5),
        Example(("the show was dull", "the show was boring"), 4.0),
        Example(("i liked the book", "we hated the song"), 1.0),
    ]


def tiny_batch(backbone: Backbone, texts=("the film was good", "we hated the very dull meal", "it was fine")):
    """A padded batch from the backbone's own tokenizer (rows of different lengths)."""
    return dict(backbone.tokenizer(list(texts), padding=True, return_tensors="pt"))
