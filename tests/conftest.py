"""Shared fixtures for flow and integration tests: a real (temporary) Prefect API, a temporary MLflow SQLite store, a tiny BERT on disk."""

from __future__ import annotations

import pytest
from transformers import BertConfig, BertModel, BertTokenizerFast

from tests.helpers.configs import write_tiny_config

WORDS = ["good", "bad", "great", "awful", "film", "food", "service", "the", "was", "is", "not", "very", "and",
         "a", "service", "plot", "music", "staff", "cheap", "price", "i", "liked", "hated", "it", "this"]


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_api) -> str:
    """The session's Prefect API, for CLI subprocesses (PREFECT_API_URL) that need not start their own
    temporary server: starting one costs about 20 s, which tests of other things need not pay."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """A randomly initialised 2-layer BERT with a word-level vocabulary, saved like a hub model."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *[chr(c) for c in range(97, 123)]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_config(tmp_path, tiny_backbone_dir):
    """Write a small pipeline config into tmp_path and return (path, home)."""
    return lambda **changes: write_tiny_config(tmp_path, tiny_backbone_dir, **changes)
