"""Shared fixtures for the core-library tests: a tiny tokenizer, tiny random backbones of every
supported encoder family, and small example lists (built by tests/helpers/core.py).

Nothing here is autouse, so other test modules in this folder are unaffected unless they ask.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from peft_core.backbones import Backbone, wrap_backbone
from peft_core.configs import TrainConfig
from peft_core.data.types import DatasetSplits, Example
from peft_core.adapter_jobs import train_adapter
from peft_core.task_specs import get_task
from tests.helpers.core import FAMILIES, SPECIAL_TOKENS, VOCAB_SIZE, WORDS, family_model, make_tokenizer, sentiment_splits
from tests.helpers.text import make_text_tokenizer
from tests.helpers.transfer import ADAPTER, SOURCE_TASKS


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
        model = family_model(family).eval()
        return wrap_backbone(name or f"tiny-{family}", model, make_tokenizer(vocab_file, family))

    return make


@pytest.fixture(scope="session")
def text_tokenizer(tmp_path_factory):
    """A T5 stand-in's tokenizer (tests/helpers/text.py): the tests' words and number characters."""
    return make_text_tokenizer(tmp_path_factory.mktemp("text-vocab"))


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


@pytest.fixture(scope="module")
def backbone(tiny_backbone):
    """A tiny BERT that a module's tests share."""
    return tiny_backbone()


@pytest.fixture(scope="module")
def source_dirs(backbone, tmp_path_factory):
    """Two tiny source adapters (with prompts) trained on `backbone`."""
    root = tmp_path_factory.mktemp("sources")
    for seed, name in enumerate(SOURCE_TASKS):
        train_adapter(backbone, get_task(name), sentiment_splits(24, 8, seed=seed + 1), ADAPTER,
                      TrainConfig(epochs=1, batch_size=8), root / name, with_prompt=True)
    return [root / name for name in SOURCE_TASKS]
