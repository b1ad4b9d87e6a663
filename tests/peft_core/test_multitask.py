"""Joint multi-task training end to end on tiny synthetic tasks, saving, loading, materialising."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertTokenizer

from peft_core.artifact_layout import BACKBONE, LEGACY_BACKBONE
from peft_core.artifacts import WEIGHTS_FILE, save_artifact
from peft_core.configs import AdapterConfig, EvalSettings, TrainConfig
from peft_core.data.types import DatasetSplits, Example
from peft_core.errors import ArtifactError, ConfigError
from peft_core.hyperformer import HyperFormerModel, HyperNetConfig, load_hyperformer
from peft_core.jobs import encode_splits
from peft_core.multitask import load_multitask_model, materialise_adapter, train_multitask
from peft_core.adapter_jobs import load_adapter_model
from peft_core.task_specs import TaskSpec
from peft_core.training import evaluate
from tests.helpers.core import random_batch, tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")

NOUNS = ["movie", "meal", "cat", "dog", "car", "book"]
WORDS = ["the", "was", "is", "not", "very", "good", "bad", *NOUNS]
SENTIMENT = TaskSpec("toy_sentiment", "demo", "classification", ("sentence",), ("negative", "positive"),
                     ("accuracy",), "Is the sentence positive?")
SAME_THING = TaskSpec("toy_same_thing", "demo", "classification", ("sentence1", "sentence2"), ("no", "yes"),
                      ("accuracy", "f1"), "Do both sentences talk about the same thing?")
OVERLAP = TaskSpec("toy_overlap", "demo", "regression", ("sentence1", "sentence2"), None,
                   ("pearson", "spearman"), "How many words do the sentences share?")
SPECS = [SENTIMENT, SAME_THING, OVERLAP]
ADAPTER = AdapterConfig(reduction_factor=4)
TRAIN = TrainConfig(learning_rate=1e-3, batch_size=8, eval_batch_size=16, epochs=2, patience=5, seed=1)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    return BertTokenizer(str(vocab))


def _sentence(rng: random.Random, noun: str, positive: bool) -> str:
    return f"the {noun} {rng.choice(['was', 'is'])} {rng.choice(['', 'very '])}{'good' if positive else 'bad'}"


def _example(task: str, rng: random.Random) -> Example:
    noun, positive = rng.choice(NOUNS), rng.random() < 0.5
    first = _sentence(rng, noun, positive)
    if task == "toy_sentiment":
        return Example((first,), int(positive))
    other = noun if rng.random() < 0.5 else rng.choice(NOUNS)
    second = _sentence(rng, other, rng.random() < 0.5)
    if task == "toy_same_thing":
        return Example((first, second), int(other == noun))
    return Example((first, second), float(len(set(first.split()) & set(second.split()))))


def toy_splits(task: str, train: int) -> DatasetSplits:
    rng = random.Random(task)
    make = lambda n: [_example(task, rng) for _ in range(n)]  # noqa: E731
    return DatasetSplits(next(s for s in SPECS if s.name == task), make(train), make(16), make(16))


SPLITS = {"toy_sentiment": toy_splits("toy_sentiment", 48), "toy_same_thing": toy_splits("toy_same_thing", 24),
          "toy_overlap": toy_splits("toy_overlap", 32)}


@pytest.mark.parametrize("method", ["hyperformer", "hyperformer_plus_plus", "shared_adapter", "full_multitask"])
def test_train_multitask_end_to_end_and_reload(method, tokenizer, tmp_path):
    backbone = tiny_bert(tokenizer)
    result = train_multitask(backbone, SPECS, SPLITS, method, ADAPTER, TRAIN, tmp_path / "model")

    for spec in SPECS:
        for split in ("validation", "test"):
            assert {f"{spec.name}_{split}_{m}" for m in spec.metrics} <= result.metrics.keys()
    mains = [result.metrics[f"{s.name}_validation_{s.main_metric}"] for s in SPECS]
    assert result.metrics["average_validation"] == pytest.approx(sum(mains) / 3)
    assert len(result.history) == 2 and "average" in result.history[0]["validation"]
    assert result.history[result.best_epoch - 1]["validation"]["average"] == max(h["validation"]["average"] for h in result.history)
    assert result.trainable_params > 0 and result.head_params == 2 * 33 + 2 * 33 + 33
    if method != "full_multitask":  # the others leave the backbone as loaded
        assert not any(p.requires_grad for p in backbone.model.parameters())

    config = json.loads((tmp_path / "model" / "adapter_config.json").read_text())
    assert config["method"] == method and [t["spec"]["name"] for t in config["tasks"]] == [s.name for s in SPECS]
    model = load_multitask_model(tmp_path / "model", backbone)
    try:
        assert model.count_parameters() == {"excluding_heads": result.trainable_params, "heads": result.head_params}
        data = encode_splits(SAME_THING, SPLITS["toy_same_thing"], backbone, TRAIN.max_length)
        reloaded = evaluate(model, SAME_THING, data.test, EvalSettings(16))
        assert reloaded == pytest.approx({m: result.metrics[f"toy_same_thing_test_{m}"] for m in SAME_THING.metrics})
    finally:
        model.detach()


def test_materialised_adapter_computes_what_the_hypernetwork_computes(tokenizer, tmp_path):
    backbone = tiny_bert(tokenizer)
    model = HyperFormerModel(backbone, SPECS, ADAPTER, HyperNetConfig(variant="hyperformer"))
    with torch.no_grad():  # move far from the near-zero init, LayerNorms included
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    batch = random_batch("regression", seed=3)
    with torch.no_grad():
        expected = model(batch, "toy_overlap").logits
    materialise_adapter(model, backbone, "toy_overlap", tmp_path / "overlap")
    model.detach()

    original = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    adapter = load_adapter_model(tmp_path / "overlap", backbone, OVERLAP)
    adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter(batch, "toy_overlap").logits, expected, rtol=1e-5, atol=1e-5)
    config = json.loads((tmp_path / "overlap" / "adapter_config.json").read_text())
    assert config["adapter"]["placement"] == "houlsby" and config["adapter"]["layer_norm_after"] is True
    adapter.detach()
    restored = backbone.model.state_dict()  # the adapter's LayerNorms are taken back out of the backbone
    assert restored.keys() == original.keys() and all(torch.equal(restored[k], original[k]) for k in original)

    tensors = load_file(tmp_path / "overlap" / WEIGHTS_FILE)
    assert any(k.startswith(BACKBONE) for k in tensors)
    legacy = {k.replace(BACKBONE, LEGACY_BACKBONE, 1): v for k, v in tensors.items()}
    save_artifact(tmp_path / "legacy", legacy, config)  # as materialised adapters were written before
    adapter = load_adapter_model(tmp_path / "legacy", backbone, OVERLAP)
    adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter(batch, "toy_overlap").logits, expected, rtol=1e-5, atol=1e-5)
    adapter.detach()
    restored = backbone.model.state_dict()
    assert all(torch.equal(restored[k], original[k]) for k in original)


def test_materialising_from_a_saved_hyperformer_and_unknown_tasks(tokenizer, tmp_path):
    backbone = tiny_bert(tokenizer)
    train = TrainConfig(learning_rate=1e-2, batch_size=8, epochs=1, seed=2)
    result = train_multitask(backbone, SPECS, SPLITS, "hyperformer_plus_plus", ADAPTER, train, tmp_path / "hyper")
    with pytest.raises(ConfigError, match="toy_sentiment, toy_same_thing, toy_overlap"):
        materialise_adapter(tmp_path / "hyper", backbone, "rte", tmp_path / "rte")

    materialise_adapter(tmp_path / "hyper", backbone, "toy_sentiment", tmp_path / "sentiment")
    config = json.loads((tmp_path / "sentiment" / "adapter_config.json").read_text())
    assert config["metrics"]["test_accuracy"] == result.metrics["toy_sentiment_test_accuracy"]
    batch = random_batch(seed=5)
    hyper = load_hyperformer(tmp_path / "hyper", backbone)
    hyper.eval()
    with torch.no_grad():
        expected = hyper(batch, "toy_sentiment").logits
    hyper.detach()
    adapter = load_adapter_model(tmp_path / "sentiment", backbone, SENTIMENT)
    adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter(batch, "toy_sentiment").logits, expected, rtol=1e-5, atol=1e-5)
    adapter.detach()


def test_load_hyperformer_refuses_other_methods(tokenizer, tmp_path):
    backbone = tiny_bert(tokenizer)
    train = TrainConfig(batch_size=8, epochs=1, max_steps_per_epoch=2)
    train_multitask(backbone, SPECS[:2], SPLITS, "shared_adapter", ADAPTER, train, tmp_path / "shared")
    with pytest.raises(ArtifactError, match="not a HyperFormer"):
        load_hyperformer(tmp_path / "shared", backbone)


def test_bad_inputs_are_config_errors(tokenizer, tmp_path):
    backbone = tiny_bert(tokenizer)
    with pytest.raises(ConfigError, match="toy_overlap"):
        train_multitask(backbone, SPECS, {k: v for k, v in SPLITS.items() if k != "toy_overlap"}, "hyperformer",
                        ADAPTER, TRAIN, tmp_path / "a")
    empty = {**SPLITS, "toy_overlap": DatasetSplits(OVERLAP, [], SPLITS["toy_overlap"].validation)}
    with pytest.raises(ConfigError, match="toy_overlap.*no training data"):
        train_multitask(backbone, SPECS, empty, "hyperformer", ADAPTER, TRAIN, tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown multi-task method"):
        train_multitask(backbone, SPECS, SPLITS, "hyper", ADAPTER, TRAIN, tmp_path / "c")
