"""Text-to-text tasks on a tiny random T5 (encoder and decoder): targets as words, greedy answers
mapped back to labels, unparseable outputs counted and scored as wrong, artifacts that reload as
text models and predict what evaluation computed; PEMT and AdapterFusion over text sources, whose
decoder sites read the decoder's positions (and PEMT's gate the encoder's prompt positions), so a
greedy decoding computes what a teacher-forced pass on its answer computes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LogitsProcessor, LogitsProcessorList

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
from peft_core.compositions import get_method, pemt
from peft_core.text_model import IGNORED, TextTargets, TextToTextModel, adapter_model, score_text_predictions
from peft_core.training import predict as evaluation_predictions
from peft_core.transfer import build_transfer_model, fit_transfer, load_sources, reset_weight_statistics, weights_report
from tests.helpers.core import family_model, sentiment_examples, tiny_batch
from tests.helpers.predictions import rows_of
from tests.helpers.text import SIMILARITY, WORDY, similarity_splits, text_backbone, wordy_splits

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTER = AdapterConfig(reduction_factor=4, placement="houlsby")
# the released PEMT code's experts: LoRA on the FFN's output projection (rank 64 there)
LORA_FFN_OUT = AdapterConfig(kind="lora", lora_rank=4, lora_targets=("ffn_out",))
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


@pytest.fixture(scope="module")
def prompt_sources(backbone, tmp_path_factory):
    """Two text sources of each kind trained (one step) with task prompts, as PEMT's stage 1 trains them."""
    folder, splits = tmp_path_factory.mktemp("prompt-sources"), wordy_splits()
    return {kind: [train_adapter(backbone, WORDY, splits, adapter, replace(TRAIN, max_steps=1), folder / f"{kind}{i}",
                                 with_prompt=True).artifact_dir for i in range(2)]
            for kind, adapter in {"bottleneck": ADAPTER, "lora": LORA_FFN_OUT}.items()}


def transfer_text_model(backbone, method, source_dirs, seed=3):
    """An untrained text model of `method` over `source_dirs`, every composition's weights (sources' included)
    drawn at random so that each example (PEMT) or token (fusion) routes differently; in eval mode."""
    model = build_transfer_model(backbone, WORDY, load_sources(source_dirs, backbone, WORDY.name), get_method(method))
    torch.manual_seed(seed)
    with torch.no_grad():
        for site in model.sites:
            for p in site.composition.parameters():
                p.normal_(0, 0.5)
    return model.eval()


class EndRowsInTurn(LogitsProcessor):
    """Row r's answer ends (end-of-sequence) at step r + 1, so the rows end at different steps."""

    def __init__(self, eos_id: int):
        self.eos_id = eos_id

    def __call__(self, input_ids, scores):
        row, scores = input_ids.shape[1] - 2, scores.clone()  # the raw logits generate returns stay as computed
        if 0 <= row < scores.shape[0]:
            scores[row] = -float("inf")
            scores[row, self.eos_id] = 0.0
        return scores


def answer_targets(sequences: torch.Tensor, eos_id: int) -> torch.Tensor:
    """The generated ids (start token dropped) as teacher-forcing targets: IGNORED after each row's first end."""
    ids = sequences[:, 1:]
    ended = (ids == eos_id).cumsum(1) - (ids == eos_id).long() > 0
    return ids.masked_fill(ended, IGNORED)


@pytest.mark.parametrize(("method", "kind"), [("pemt", "bottleneck"), ("pemt", "lora"), ("adapterfusion", "bottleneck")])
def test_a_greedy_decoding_computes_what_a_teacher_forced_pass_on_its_answer_computes(backbone, prompt_sources,
                                                                                      method, kind):
    model = transfer_text_model(backbone, method, prompt_sources[kind])
    try:
        batch, eos = tiny_batch(backbone), model.heads[WORDY.name].eos_id
        if method == "pemt" and kind == "lora":  # the released code's gate widths: d_ff in the encoder, d_model in the decoder
            gates = {site.key: tuple(site.composition.gate.shape) for site in model.sites}
            assert gates == {"0.ffn_out": (64, 2), "1.ffn_out": (64, 2), "decoder.0.ffn_out": (32, 2),
                             "decoder.1.ffn_out": (32, 2)}
        # as decoded: the predictions are the teacher-forced pass's, and so are the logits, step by step
        greedy = model.greedy(batch, WORDY.name, output_logits=True, return_dict_in_generate=True)
        targets = answer_targets(greedy.sequences, eos)
        with torch.no_grad():
            forced = model.teacher_forced_logits(batch, WORDY.name, targets)
        counted = targets != IGNORED
        assert torch.equal(forced.argmax(-1)[counted], targets[counted])
        assert torch.allclose(forced[counted], torch.stack(greedy.logits, 1)[counted], atol=1e-5)
        # answers of different lengths: the decoder sites count each row's answer positions only, as the
        # teacher-forced pass does, so the reported weights (tracked in eval passes) agree too
        reset_weight_statistics(model)
        greedy = model.greedy(batch, WORDY.name, output_logits=True, return_dict_in_generate=True, max_new_tokens=4,
                              logits_processor=LogitsProcessorList([EndRowsInTurn(eos)]))
        decoded = weights_report(model, ["a", "b"])["weights"]
        targets = answer_targets(greedy.sequences, eos)
        assert (targets != IGNORED).sum(1).tolist() == [2, 3, 4]
        reset_weight_statistics(model)
        with torch.no_grad():
            forced = model.teacher_forced_logits(batch, WORDY.name, targets)
        counted = targets != IGNORED
        assert torch.allclose(forced[counted], torch.stack(greedy.logits, 1)[counted], atol=1e-5)
        assert weights_report(model, ["a", "b"])["weights"] == [pytest.approx(row, abs=1e-5) for row in decoded]
        assert decoded[-1] != pytest.approx([0.5, 0.5], abs=1e-3)  # routed, not uniform
    finally:
        model.detach()


def test_pemt_gates_decoder_sites_on_the_encoders_prompt_and_pools_their_loss_over_the_answer(backbone, prompt_sources,
                                                                                             monkeypatch):
    model = transfer_text_model(backbone, "pemt", prompt_sources["bottleneck"])
    pooled = []
    loss = pemt.task_sparsity_loss
    monkeypatch.setattr(pemt, "task_sparsity_loss", lambda *args: pooled.append(args[3]) or loss(*args))
    try:
        batch = tiny_batch(backbone) | {"labels": torch.tensor([1, 0, 1])}
        prompt_length = model.prompt.embeddings.shape[0]
        decoder_site = next(site for site in model.sites if site.stack)
        model.train()
        model(batch, WORDY.name).loss.backward()
        assert decoder_site.composition.gate.grad.abs().sum() > 0
        targets = model.heads[WORDY.name].encode(batch["labels"])
        with_prompt = torch.cat([torch.ones(3, prompt_length, dtype=torch.long), batch["attention_mask"]], 1)
        assert len(pooled) == len(model.sites) == 8
        assert all(torch.equal(mask, with_prompt) for mask in pooled[:4])
        assert all(torch.equal(mask, targets != IGNORED) for mask in pooled[4:])
        # a decoder site's gate: the encoder's output over the prompt positions, one vector per example
        context = model.context.decoder
        expected = torch.softmax(context.encoder.output[:, :prompt_length].mean(1) @ decoder_site.composition.gate, -1)
        assert torch.allclose(decoder_site.composition.gate_weights(torch.zeros(3, 5, 32), context), expected)
    finally:
        model.detach()


@pytest.mark.parametrize("method", ["pemt", "adapterfusion"])
def test_pemt_and_fusion_train_save_reload_and_predict_in_text_form(backbone, prompt_sources, method, tmp_path):
    splits = wordy_splits()
    result = fit_transfer(backbone, WORDY, splits, method, prompt_sources["bottleneck"], TRAIN, tmp_path / method)
    report = result.extra["weights"]
    assert report["sites"][4:] == ["decoder.0.attn", "decoder.0.ffn", "decoder.1.attn", "decoder.1.ffn"]
    assert all(row is not None for row in report["weights"])  # the evaluation's decodings tracked every site
    saved = load_file(tmp_path / method / WEIGHTS_FILE)
    if method == "pemt":
        assert {"prompt.embeddings", "sites.decoder.1.ffn.gate"} <= set(saved)
        assert any(name.startswith("backbone.decoder.") for name in saved)  # the decoder's LayerNorms train too
    fitted = load_fitted_model(tmp_path / method, backbone)
    try:
        assert score_rows(fitted, rows_of(WORDY, splits.test, with_labels=True)) == pytest.approx(
            {k.removeprefix("test_"): v for k, v in result.metrics.items() if k.startswith("test_")})
    finally:
        fitted.close()
