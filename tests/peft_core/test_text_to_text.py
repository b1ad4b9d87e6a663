"""Text-to-text tasks on a tiny random T5 (encoder and decoder): targets as words, greedy answers
mapped back to labels, unparseable outputs counted and scored as wrong, artifacts that reload as
text models and predict what evaluation computed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from peft_core.adapter_jobs import train_adapter
from peft_core.artifacts import WEIGHTS_FILE, read_artifact_config
from peft_core.backbones import wrap_backbone
from peft_core.configs import AdapterConfig, EvalSettings, TrainConfig
from peft_core.data.encoding import EncodedSplit
from peft_core.data.types import DatasetSplits
from peft_core.errors import ArtifactError, BackboneError, ConfigError
from peft_core.inference import load_fitted_model, predict, score_rows
from peft_core.model import AdapterModel
from peft_core.task_specs import get_task
from peft_core.text_model import TextTargets, TextToTextModel, adapter_model, score_text_predictions
from peft_core.training import predict as evaluation_predictions
from peft_core.transfer import fit_transfer
from tests.helpers.core import family_model, sentiment_examples, tiny_batch
from tests.helpers.predictions import rows_of
from tests.helpers.text import SIMILARITY, WORDY, similarity_splits, text_backbone, wordy_splits

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTER = AdapterConfig(reduction_factor=4, placement="houlsby")
TRAIN = TrainConfig(epochs=1, max_steps=3, batch_size=8, eval_batch_size=8, max_length=24, learning_rate=1e-2)


@pytest.fixture(scope="module")
def backbone(text_tokenizer):
    return text_backbone(text_tokenizer)


def test_sites_sit_in_the_encoder_and_the_decoder_and_pass_through(backbone, text_tokenizer):
    batch = tiny_batch(backbone)
    batch["labels"] = torch.tensor([1, 0, 1])
    model = adapter_model(backbone, "houlsby")
    try:
        assert isinstance(model, TextToTextModel)
        assert [s.key for s in model.sites] == ["0.attn", "0.ffn", "1.attn", "1.ffn", "decoder.0.attn",
                                                "decoder.0.ffn", "decoder.1.attn", "decoder.1.ffn"]
        model.add_head(WORDY)
        model.eval()
        with torch.no_grad():
            wrapped = model(batch, WORDY.name)
            targets = model.heads[WORDY.name].encode(batch["labels"])
            plain = backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=targets)
        assert torch.allclose(wrapped.logits, plain.logits) and torch.allclose(wrapped.loss, plain.loss)
    finally:
        model.detach()
    assert not any(type(m).__name__.endswith("Site") for m in backbone.model.modules())


def test_a_model_refuses_a_backbone_loaded_for_the_other_output(backbone, text_tokenizer):
    with pytest.raises(BackboneError, match="loaded for text output, but AdapterModel answers through head"):
        AdapterModel(backbone)
    with pytest.raises(BackboneError, match="loaded for head output, but TextToTextModel answers through text"):
        TextToTextModel(text_backbone(text_tokenizer, "head"))
    with pytest.raises(BackboneError, match="of the decoder-only family: text-to-text"):
        wrap_backbone("tiny-gpt2", family_model("gpt2"), text_tokenizer, output="text")


def test_targets_read_back_case_and_spacing_aside(backbone):
    targets = TextTargets(WORDY, backbone)
    assert targets.parse(["good", "BAD", " good ", "goodbad", ""]).tolist() == [1, 0, 1, -1, -1]
    numbers = TextTargets(SIMILARITY, backbone)
    assert numbers.parse(["3. 4", "-1.0", "x"]).tolist()[:2] == pytest.approx([3.4, -1.0])
    assert np.isnan(numbers.parse(["x"]).item())
    assert numbers.encode(torch.tensor([3.37])).tolist() == [[*backbone.tokenizer.convert_tokens_to_ids(["3", ".", "4"]),
                                                             backbone.model.generation_config.eos_token_id]]


def test_a_label_the_tokenizer_cannot_write_is_one_line_naming_task_and_label(backbone):
    with pytest.raises(ConfigError, match="task demo_sentiment: label 'negative' reads back") as caught:
        TextTargets(get_task("demo_sentiment"), backbone)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"task shouty: labels \['good', 'GOOD'\] are not told apart"):
        TextTargets(replace(WORDY, name="shouty", label_names=("good", "GOOD")), backbone)


def test_unparseable_outputs_are_counted_and_scored_as_wrong():
    metrics, scored = score_text_predictions(WORDY, np.array([1, -1, 0, -1]), np.array([1, 1, 0, 0]))
    assert scored.tolist() == [1, 0, 0, 1]
    assert metrics["unparseable"] == 2 and metrics["accuracy"] == 0.5
    metrics, scored = score_text_predictions(SIMILARITY, np.array([np.nan, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert scored.tolist() == [-1.0, 2.0, 3.0] and metrics["unparseable"] == 1


@pytest.mark.parametrize("spec", [WORDY, SIMILARITY], ids=["classification", "regression"])
def test_an_adapter_trains_saves_reloads_and_predicts_in_text_form(backbone, spec, tmp_path):
    if spec is WORDY:  # trained long enough that every answer is a label
        splits = DatasetSplits(WORDY, sentiment_examples(64), sentiment_examples(8, 1), sentiment_examples(8, 2))
        train = replace(TRAIN, max_steps=40)
    else:
        splits, train = similarity_splits(), TRAIN
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    metrics = train_adapter(backbone, spec, splits, ADAPTER, train, tmp_path / "fit").metrics
    assert read_artifact_config(tmp_path / "fit")["task_output"] == "text"
    assert {"test_unparseable", "validation_unparseable", f"test_{spec.main_metric}"} <= set(metrics)
    assert metrics["test_unparseable"] == 0 or spec is SIMILARITY

    fitted = load_fitted_model(tmp_path / "fit", backbone)
    try:
        encoded = EncodedSplit.from_examples(spec, splits.test, backbone.tokenizer, TRAIN.max_length)
        expected, _ = evaluation_predictions(fitted.model, spec, encoded, EvalSettings(8, fitted.precision))
        answers = predict(fitted, rows_of(spec, splits.test))
        key = "value" if spec.is_regression else "label"
        missing = [a[key] is None for a in answers]
        assert sum(missing) == metrics["test_unparseable"]
        if spec.is_regression:
            values = [None if m else v for m, v in zip(missing, expected.tolist())]
            assert [a["value"] for a in answers] == pytest.approx(values)
        else:
            assert [a["label"] for a in answers] == [None if i < 0 else spec.label_names[i] for i in expected.tolist()]
        scored = score_rows(fitted, rows_of(spec, splits.test, with_labels=True))
        assert scored == pytest.approx({k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")})
    finally:
        fitted.close()
    assert all(backbone.model.state_dict()[k].equal(v) for k, v in before.items()), "the backbone is left as loaded"


def test_a_text_artifact_does_not_load_on_a_backbone_loaded_for_heads(backbone, text_tokenizer, tmp_path):
    splits = DatasetSplits(WORDY, sentiment_examples(8), sentiment_examples(4, 1), sentiment_examples(4, 2))
    train_adapter(backbone, WORDY, splits, ADAPTER, replace(TRAIN, max_steps=1), tmp_path / "fit")
    encoder = family_model("t5")  # the same checkpoint loaded for heads: its encoder alone, the same fingerprint
    encoder.load_state_dict(backbone.model.state_dict(), strict=False)
    for_heads = wrap_backbone("tiny-t5", encoder, text_tokenizer)
    assert for_heads.fingerprint == backbone.fingerprint
    with pytest.raises(ArtifactError, match="trained for task_output: text"):
        load_fitted_model(tmp_path / "fit", for_heads)


def test_scalearn_combines_text_sources_and_methods_without_a_text_form_are_refused(backbone, tmp_path):
    splits = wordy_splits()
    sources = [train_adapter(backbone, WORDY, splits, ADAPTER, TRAIN, tmp_path / name).artifact_dir for name in "ab"]
    assert {k for k in load_file(sources[0] / WEIGHTS_FILE) if k.startswith("sites.decoder.1.ffn.")}
    metrics = fit_transfer(backbone, WORDY, splits, "scalearn", sources, TRAIN, tmp_path / "scalearn").metrics
    fitted = load_fitted_model(tmp_path / "scalearn", backbone)
    try:
        assert score_rows(fitted, rows_of(WORDY, splits.test, with_labels=True)) == pytest.approx(
            {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")})
    finally:
        fitted.close()
    with pytest.raises(ConfigError, match="method 'average' has no text-to-text form") as caught:
        fit_transfer(backbone, WORDY, splits, "average", sources, TRAIN, tmp_path / "average")
    assert "\n" not in str(caught.value)
