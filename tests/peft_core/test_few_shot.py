"""HyperFormer few-shot transfer (METHODS §2a): a new task embedding and head over a joint hypernetwork."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from peft_core.artifact_layout import BACKBONE
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ArtifactError, ConfigError
from peft_core.few_shot_options import FewShotOptions
from peft_core.hyperformer.few_shot import (
    build_hyperformer_transfer_model, fit_hyperformer_transfer, load_hyperformer_transfer, read_joint_hyperformer,
)
from peft_core.inference import load_fitted_model
from peft_core.multitask import train_multitask
from peft_core.adapter_jobs import train_adapter
from peft_core.sites import AdapterSite
from peft_core.task_specs import get_task
from tests.helpers.predictions import assert_equals_evaluation, demo_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SENTIMENT, NLI, LOWRES = get_task("demo_sentiment"), get_task("demo_nli"), get_task("demo_lowres")
ADAPTER = AdapterConfig(reduction_factor=4)
JOINT_TRAIN = TrainConfig(epochs=1, batch_size=8, eval_batch_size=8, learning_rate=1e-2, max_length=24, seed=3)
FEW_SHOT = TrainConfig(epochs=2, max_steps=6, batch_size=4, eval_batch_size=8, learning_rate=1e-2, max_length=24,
                       seed=5)


@pytest.fixture(scope="module")
def joint_dir(backbone, tmp_path_factory):
    """A HyperFormer++ trained jointly on the two sources (the target is new to it)."""
    folder = tmp_path_factory.mktemp("joint") / "hyperformer_plus_plus"
    train_multitask(backbone, [SENTIMENT, NLI], {s.name: demo_splits(s) for s in (SENTIMENT, NLI)},
                    "hyperformer_plus_plus", ADAPTER, JOINT_TRAIN, folder)
    return folder


def pristine(backbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backbone.model.state_dict().items()}


def assert_backbone_is(backbone, expected: dict[str, torch.Tensor]) -> None:
    state = backbone.model.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_the_embedding_starts_from_the_named_task_or_the_mean(backbone, joint_dir):
    before = pristine(backbone)
    joint = read_joint_hyperformer(joint_dir, backbone)
    assert joint.tasks == [SENTIMENT.name, NLI.name]
    embeddings = joint.hypernetwork_state["task_embeddings.weight"]
    for init_from, expected in ((NLI.name, embeddings[1]), ("mean", embeddings.mean(0))):
        model = build_hyperformer_transfer_model(backbone, LOWRES, joint, FewShotOptions(init_from, train_hypernetwork=False))
        try:
            assert model.tasks == [LOWRES.name]
            assert torch.equal(model.hypernetwork.task_embeddings.weight[0].detach(), expected)
            trainable = set(model.trainable_parameters())
            assert trainable == {"hypernetwork.task_embeddings.weight", *(f"heads.{LOWRES.name}.{n}" for n, _ in
                                                                          model.heads[LOWRES.name].named_parameters())}
        finally:
            model.detach()
    assert_backbone_is(backbone, before)
    with pytest.raises(ConfigError, match="demo_sentiment, demo_nli"):
        build_hyperformer_transfer_model(backbone, LOWRES, joint, FewShotOptions("rte"))
    with pytest.raises(ConfigError, match="train_hypernetwork"):
        FewShotOptions.from_options({"train_hypernetwork": "yes"})
    with pytest.raises(ConfigError, match="init_from, train_hypernetwork"):
        FewShotOptions.from_options({"init": "mean"})
    for bad in ({}, {"demo_lowres": ""}, {"demo_lowres": 3}, 7):
        with pytest.raises(ConfigError, match="one per target, e.g. {rte: mnli"):
            FewShotOptions(bad)


def test_init_from_per_target_picks_each_targets_related_task(backbone, joint_dir):
    """{target: task, default: ...}: a named target starts from its task's embedding, any other from
    the default's (or the mean without one); the options a fit records name its target's task alone."""
    joint = read_joint_hyperformer(joint_dir, backbone)
    embeddings = joint.hypernetwork_state["task_embeddings.weight"]
    per_target = {LOWRES.name: NLI.name, "default": SENTIMENT.name}
    for options, target, expected in [
        (per_target, LOWRES, embeddings[1]),
        (per_target, SENTIMENT, embeddings[0]),  # not named: the default
        ({LOWRES.name: SENTIMENT.name}, NLI, embeddings.mean(0)),  # not named, no default: the mean
    ]:
        model = build_hyperformer_transfer_model(backbone, target, joint, FewShotOptions(options))
        try:
            assert torch.equal(model.hypernetwork.task_embeddings.weight[0].detach(), expected)
        finally:
            model.detach()
    resolved = FewShotOptions.from_options({"init_from": per_target})
    assert resolved.for_target(LOWRES.name).to_dict() == {"init_from": NLI.name, "train_hypernetwork": True}
    assert resolved.named_tasks() == [NLI.name, SENTIMENT.name] and resolved.named_targets() == [LOWRES.name]


def test_by_default_the_hypernetwork_and_its_layernorms_train_too(backbone, joint_dir):
    """The paper's procedure (METHODS §2a): the whole model is fine-tuned on the k examples."""
    assert FewShotOptions().train_hypernetwork is True
    assert FewShotOptions().trained() == ["task_embedding", "head", "hypernetwork", "backbone_layernorms"]
    model = build_hyperformer_transfer_model(backbone, LOWRES, read_joint_hyperformer(joint_dir, backbone))
    try:
        trainable = set(model.trainable_parameters())
        hypernetwork = {f"hypernetwork.{n}" for n, _ in model.hypernetwork.named_parameters()}
        assert hypernetwork <= trainable and len(hypernetwork) > 1
        assert any(n.startswith("encoder.") and "LayerNorm" in n for n in trainable)
    finally:
        model.detach()


def test_a_frozen_hypernetwork_stays_bit_identical_and_the_backbone_is_restored(backbone, joint_dir, tmp_path):
    before = pristine(backbone)
    joint = read_joint_hyperformer(joint_dir, backbone)
    result = fit_hyperformer_transfer(backbone, LOWRES, demo_splits(LOWRES), joint_dir, FEW_SHOT, tmp_path / "fit",
                                      init_from=SENTIMENT.name, train_hypernetwork=False)
    assert_backbone_is(backbone, before)
    assert {"validation_accuracy", "test_accuracy", "test_f1"} <= result.metrics.keys()
    assert result.trainable_params == 64 and result.head_params == 33 * 2  # the embedding; the head apart

    saved = load_file(tmp_path / "fit" / "adapter.safetensors")
    for name, value in joint.hypernetwork_state.items():
        if name != "task_embeddings.weight":
            assert torch.equal(saved[f"hypernetwork.{name}"], value), name
    assert not torch.equal(saved["hypernetwork.task_embeddings.weight"][0], joint.hypernetwork_state["task_embeddings.weight"][0])
    layernorms = {k: v for k, v in saved.items() if k.startswith(BACKBONE)}
    assert layernorms.keys() == joint.layernorms.keys() and all(torch.equal(layernorms[k], joint.layernorms[k]) for k in layernorms)

    config = json.loads((tmp_path / "fit" / "adapter_config.json").read_text())
    assert config["method"] == "hyperformer_plus_plus_few_shot"
    assert config["few_shot"]["init_from"] == SENTIMENT.name and config["few_shot"]["trained"] == ["task_embedding", "head"]
    assert config["few_shot"]["joint_model"]["tasks"].keys() == {SENTIMENT.name, NLI.name}
    assert len(config["few_shot"]["joint_model"]["fingerprint"]) == 16 and config["few_shot"]["target_in_joint_model"] is False


def test_training_the_hypernetwork_too_and_reloading_predicts_what_evaluation_computed(backbone, joint_dir, tmp_path):
    before = pristine(backbone)
    joint = read_joint_hyperformer(joint_dir, backbone)
    result = fit_hyperformer_transfer(backbone, LOWRES, demo_splits(LOWRES), joint_dir, FEW_SHOT, tmp_path / "fit",
                                      init_from={LOWRES.name: NLI.name, "default": "mean"})  # the default trains it
    assert_backbone_is(backbone, before)
    saved = load_file(tmp_path / "fit" / "adapter.safetensors")
    assert not torch.equal(saved["hypernetwork.generators.0.linear.weight"], joint.hypernetwork_state["generators.0.linear.weight"])
    assert any(not torch.equal(saved[k], v) for k, v in joint.layernorms.items())
    config = json.loads((tmp_path / "fit" / "adapter_config.json").read_text())
    assert config["few_shot"]["trained"] == ["task_embedding", "head", "hypernetwork", "backbone_layernorms"]
    assert config["few_shot"]["init_from"] == NLI.name and config["few_shot"]["train_hypernetwork"] is True

    fitted = load_fitted_model(tmp_path / "fit", backbone)
    try:
        assert fitted.model.count_parameters() == {"excluding_heads": result.trainable_params, "heads": result.head_params}
        assert_equals_evaluation(fitted, result.metrics)
    finally:
        fitted.close()
    assert_backbone_is(backbone, before)


def test_other_folders_are_clear_errors(backbone, tmp_path):
    train_adapter(backbone, LOWRES, demo_splits(LOWRES), ADAPTER, TrainConfig(epochs=1, max_steps_per_epoch=1), tmp_path / "a")
    with pytest.raises(ArtifactError, match="not a HyperFormer"):
        fit_hyperformer_transfer(backbone, LOWRES, demo_splits(LOWRES), tmp_path / "a", FEW_SHOT, tmp_path / "fit")
    with pytest.raises(ArtifactError, match="not a HyperFormer few-shot fit"):
        load_hyperformer_transfer(tmp_path / "a", backbone, LOWRES)
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())
