"""Tiny backbones' configs and tokenizers, and small learnable examples, for the core-library tests."""

from __future__ import annotations

import random

import torch
from transformers import (
    AutoModel, AutoModelForSeq2SeqLM, AutoModelForTextEncoding, BertConfig, BertTokenizerFast, DebertaV2Config, DistilBertConfig,
    ElectraConfig, GPT2Config, LlamaConfig, Qwen2Config, RobertaConfig, T5Config,
)

from peft_core.backbones import Backbone, wrap_backbone
from peft_core.data.types import DatasetSplits, Example
from peft_core.task_specs import get_task

HIDDEN = 32
VOCAB_SIZE = 100
ENCODERS = ("bert", "roberta", "deberta-v2", "electra", "distilbert")
FAMILIES = (*ENCODERS, "t5", "llama", "qwen2", "gpt2")  # T5: its encoder

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
    if family == "t5":  # Flan-T5's gated FFN
        return T5Config(vocab_size=VOCAB_SIZE, d_model=HIDDEN, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                        feed_forward_proj="gated-gelu", decoder_start_token_id=0)  # as T5 checkpoints set it
    decoder = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    if family == "llama":
        return LlamaConfig(**decoder)
    if family == "qwen2":
        return Qwen2Config(**decoder)
    if family == "gpt2":
        return GPT2Config(vocab_size=VOCAB_SIZE, n_embd=HIDDEN, n_layer=2, n_head=2, n_positions=64)
    raise ValueError(f"unknown family {family}")


def family_model(family: str, output: str = "head"):
    """A random model of `family` as `load_backbone` loads it for `output` (of T5 for heads, the encoder alone)."""
    config = family_config(family)
    if not config.is_encoder_decoder:
        return AutoModel.from_config(config)
    return (AutoModelForSeq2SeqLM if output == "text" else AutoModelForTextEncoding).from_config(config)


def make_tokenizer(vocab_file, family: str = "bert"):
    # transformers 5's BertTokenizerFast silently ignores `vocab_file=` (every word becomes [UNK]);
    # the vocabulary goes in as `vocab=`, which accepts a path to a vocab.txt.
    # DistilBERT's, T5's and the decoders' forwards take no token_type_ids, so their tokenizers must not produce them.
    segments = family in ("bert", "roberta", "deberta-v2", "electra")
    names = ["input_ids", "token_type_ids", "attention_mask"] if segments else ["input_ids", "attention_mask"]
    return BertTokenizerFast(vocab=str(vocab_file), model_input_names=names)


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


def tiny_batch(backbone: Backbone, texts=("the film was good", "we hated the very dull meal", "it was fine")):
    """A padded batch from the backbone's own tokenizer (rows of different lengths)."""
    return dict(backbone.tokenizer(list(texts), padding=True, return_tensors="pt"))


def tiny_bert(tokenizer=None, seed: int = 0) -> Backbone:
    """A random 2-layer, 32-wide BERT (vocab 100, 512 positions) with `tokenizer`, a new one each call."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return wrap_backbone("tiny-bert", AutoModel.from_config(config), tokenizer)


def random_batch(problem: str = "classification", batch: int = 4, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.rand(batch, generator=g) * 5 if problem == "regression" else torch.randint(0, 2, (batch,), generator=g)
    return {"input_ids": torch.randint(5, 100, (batch, length), generator=g),
            "attention_mask": torch.ones(batch, length, dtype=torch.long), "labels": labels}
