"""HyperFormer(++) in text-to-text form on a tiny random T5, as the paper runs it: one hypernetwork
generates the encoder's and the decoder's adapters; joint training, save, reload, predict; a task
materialised as a plain text adapter; few-shot transfer over the joint model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from peft_core.adapter_jobs import load_adapter_model
from peft_core.artifacts import WEIGHTS_FILE, read_artifact_config
from peft_core.configs import AdapterConfig, EvalSettings, TrainConfig
from peft_core.data.encoding import EncodedSplit
from peft_core.errors import ConfigError
from peft_core.hyperformer import HyperNetConfig, LayerGenerator, TextHyperFormerModel, layernorm_parameters, make_hyperformer
from peft_core.hyperformer.few_shot import fit_hyperformer_transfer
from peft_core.inference import load_fitted_model, predict, score_rows
from peft_core.multitask import materialise_adapter, train_multitask
from peft_core.training import predict as evaluation_predictions
from tests.helpers.core import tiny_batch
from tests.helpers.predictions import rows_of
from tests.helpers.text import SIMILARITY, WORDY, similarity_splits, text_backbone, wordy_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = [WORDY, SIMILARITY]
ADAPTER = AdapterConfig(reduction_factor=4)
TRAIN = TrainConfig(epochs=1, max_steps=3, batch_size=8, eval_batch_size=8, max_length=24, learning_rate=1e-2)


@pytest.fixture(scope="module")
def backbone(text_tokenizer):
    return text_backbone(text_tokenizer)


@pytest.fixture(params=["hyperformer", "hyperformer_plus_plus"])
def model(request, backbone):
    m = make_hyperformer(backbone, SPECS, ADAPTER, HyperNetConfig(variant=request.param))
    yield m
    m.detach()


def splits():
    return {WORDY.name: wordy_splits(32), SIMILARITY.name: similarity_splits()}


def test_one_hypernetwork_generates_the_encoder_and_the_decoder_adapters(model):
    assert isinstance(model, TextHyperFormerModel)
    assert [s.key for s in model.sites][4:] == ["decoder.0.attn", "decoder.0.ffn", "decoder.1.attn", "decoder.1.ffn"]
    # the released code's T5Stack: the decoder has its own layer (and position) embeddings, projector and
    # generators; the task embeddings are shared
    assert isinstance(model.hypernetwork.decoder, LayerGenerator)
    assert not hasattr(model.hypernetwork.decoder, "task_embeddings")
    weights = model.hypernetwork(WORDY.name)
    assert weights["down_weight"].shape == (4, 2, 32, 8)
    encoder_site, decoder_site = model.sites[0].composition, model.sites[4].composition
    assert decoder_site.index == (2, 0)
    assert not torch.allclose(encoder_site.weights(WORDY.name)["down_weight"], decoder_site.weights(WORDY.name)["down_weight"])
    counts, closed = model.count_parameters(), model.closed_form_parameter_count()
    assert counts == {"excluding_heads": closed["total"], "heads": 0}
    assert closed["layer_embeddings"] == 4 * 64
    assert any(name.startswith("decoder.") for name in layernorm_parameters(model.backbone_info))


def test_the_decoder_generation_and_layernorms_train_and_a_decoding_generates_once(model, backbone):
    batch = tiny_batch(backbone) | {"labels": torch.tensor([1, 0, 1])}
    model(batch, WORDY.name).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"hypernetwork.task_embeddings.weight", "hypernetwork.decoder.layer_embeddings"} <= with_grad
    assert any(n.startswith("hypernetwork.decoder.generators") for n in with_grad)
    assert any(n.startswith("encoder.decoder.") and n.endswith("layer_norm.weight") for n in with_grad)
    calls = []
    model.hypernetwork.register_forward_hook(lambda *args: calls.append(1))
    model.eval()
    with torch.no_grad():
        texts = model.generate_texts(batch, WORDY.name)
    assert len(texts) == 3 and len(calls) == 1 and model.generated.weights is None


def test_a_materialised_task_is_a_text_adapter_computing_what_the_hypernetwork_computes(backbone, tmp_path):
    model = make_hyperformer(backbone, SPECS, ADAPTER)
    with torch.no_grad():
        for p in model.hypernetwork.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    batch = tiny_batch(backbone) | {"labels": torch.tensor([1, 0, 1])}
    model.eval()
    try:
        with torch.no_grad():
            expected = model(batch, WORDY.name).logits
        materialise_adapter(model, backbone, WORDY.name, tmp_path / "adapter")
    finally:
        model.detach()
    assert {k for k in load_file(tmp_path / "adapter" / WEIGHTS_FILE) if k.startswith("sites.decoder.1.ffn.ln_")}
    adapter = load_adapter_model(tmp_path / "adapter", backbone, WORDY).eval()
    try:
        with torch.no_grad():
            assert torch.equal(adapter(batch, WORDY.name).logits, expected)
    finally:
        adapter.detach()


@pytest.mark.parametrize("method, steps", [("hyperformer_plus_plus", 30), ("hyperformer", 2), ("shared_adapter", 2)])
def test_joint_text_model_trains_saves_reloads_and_predicts_what_evaluation_computed(backbone, method, steps, tmp_path):
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    metrics = train_multitask(backbone, SPECS, splits(), method, ADAPTER, replace(TRAIN, max_steps=steps),
                              tmp_path / "joint").metrics
    assert read_artifact_config(tmp_path / "joint")["task_output"] == "text"
    for spec, test in ((WORDY, wordy_splits(32).test), (SIMILARITY, similarity_splits().test)):
        assert f"{spec.name}_test_unparseable" in metrics
        fitted = load_fitted_model(tmp_path / "joint", backbone, task=spec.name)
        try:
            recorded = {k.removeprefix(f"{spec.name}_test_"): v for k, v in metrics.items()
                        if k.startswith(f"{spec.name}_test_")}
            assert score_rows(fitted, rows_of(spec, test, with_labels=True)) == pytest.approx(recorded)
            encoded = EncodedSplit.from_examples(spec, test, backbone.tokenizer, TRAIN.max_length)
            expected, _ = evaluation_predictions(fitted.model, spec, encoded, EvalSettings(8, fitted.precision))
            answers = [a["value" if spec.is_regression else "label"] for a in predict(fitted, rows_of(spec, test))]
            if spec.is_regression:
                assert answers == pytest.approx([None if v != v else v for v in expected.tolist()])
            else:
                assert answers == [None if i < 0 else spec.label_names[i] for i in expected.tolist()]
        finally:
            fitted.close()
    if method == "hyperformer_plus_plus":  # trained long enough that the numbers are numbers
        assert metrics[f"{SIMILARITY.name}_test_unparseable"] == 0
    assert all(backbone.model.state_dict()[k].equal(v) for k, v in before.items()), "the backbone is left as loaded"


def test_full_multitask_training_has_no_text_form(backbone, tmp_path):
    with pytest.raises(ConfigError, match="method 'full_multitask' has no text-to-text form"):
        train_multitask(backbone, SPECS, splits(), "full_multitask", ADAPTER, TRAIN, tmp_path / "joint")


def test_few_shot_transfer_adapts_the_joint_text_model_to_a_new_task(backbone, tmp_path):
    train_multitask(backbone, [SIMILARITY], {SIMILARITY.name: similarity_splits()}, "hyperformer_plus_plus", ADAPTER,
                    TRAIN, tmp_path / "joint")
    target = wordy_splits()
    result = fit_hyperformer_transfer(backbone, WORDY, target, tmp_path / "joint", TRAIN, tmp_path / "fit",
                                      init_from=SIMILARITY.name)
    assert read_artifact_config(tmp_path / "fit")["task_output"] == "text"
    assert result.extra["few_shot"]["init_from"] == SIMILARITY.name
    fitted = load_fitted_model(tmp_path / "fit", backbone)
    try:
        assert isinstance(fitted.model, TextHyperFormerModel)
        assert score_rows(fitted, rows_of(WORDY, target.test, with_labels=True)) == pytest.approx(
            {k.removeprefix("test_"): v for k, v in result.metrics.items() if k.startswith("test_")})
    finally:
        fitted.close()
