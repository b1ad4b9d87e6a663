"""The shared training loop: it learns, trains only what it should, is seeded, resumes from a
checkpoint to the same weights, stops early, and full fine-tuning trains the backbone."""

import dataclasses
import json
import random

import pytest
import torch
from safetensors.torch import load_file
from torch.overrides import _get_current_function_mode_stack

from peft_core import adapter_jobs
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data.types import DatasetSplits, Example
from peft_core.data.encoding import EncodedSplit, collate
from peft_core.dropout import FastCpuDropout
from peft_core.full_finetune import train_full_finetune
from peft_core.model import AdapterModel
from peft_core.sites import AdapterSite
from peft_core.task_specs import get_task
from peft_core.training import fit, fit_task

from tests.helpers.core import FAMILIES, NEGATIVE, POSITIVE, sentiment_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = get_task("demo_sentiment")
ADAPTER = AdapterConfig(reduction_factor=4)
CFG = TrainConfig(epochs=2, batch_size=8, eval_batch_size=32, max_length=16, learning_rate=1e-2, seed=3)


class Crash(RuntimeError):
    pass


def encode(backbone, splits):
    enc = lambda examples: EncodedSplit.from_examples(SPEC, examples, backbone.tokenizer, CFG.max_length)  # noqa: E731
    return enc(splits.train), enc(splits.validation)


def build(backbone, init_seed=0, placement="pfeiffer") -> AdapterModel:
    torch.manual_seed(init_seed)
    return adapter_jobs.build_adapter_model(backbone, SPEC, AdapterConfig(placement=placement, reduction_factor=4))


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.trainable_parameters().items()}


def assert_same_weights(a: dict, b: dict):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@torch.no_grad()
def mean_loss(model, split) -> float:
    model.eval()
    return model(collate(split.rows, split.pad_id), SPEC.name).loss.item()


def adjective_examples(n: int, seed: int) -> list[Example]:
    """One sentiment word per example (label 1 for a positive one): learnable in a few epochs."""
    rng = random.Random(seed)
    examples = [Example((rng.choice(POSITIVE if i % 2 == 0 else NEGATIVE),), int(i % 2 == 0)) for i in range(n)]
    rng.shuffle(examples)
    return examples


def test_training_lowers_the_loss_on_a_learnable_task(tiny_backbone):
    backbone = tiny_backbone("bert")
    splits = DatasetSplits(SPEC, adjective_examples(48, seed=0), adjective_examples(24, seed=1))
    train, validation = encode(backbone, splits)
    model = build(backbone)
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 8, "patience": 8, "batch_size": 4})
    try:
        before = mean_loss(model, train)
        result = fit_task(model, SPEC, train, validation, cfg)
        after = mean_loss(model, train)  # of the best epoch's weights, which fit leaves loaded
    finally:
        model.detach()
    assert after < 0.6 * before, (before, after)
    assert result.history[-1].train_loss < 0.5 * result.history[0].train_loss, result.history_dicts()
    assert result.best_validation["accuracy"] >= 0.8
    assert [h.epoch for h in result.history] == list(range(1, 9))


def test_training_forward_passes_run_the_cpu_dropout_and_evaluation_does_not(tiny_backbone):
    backbone = tiny_backbone("bert")
    train, validation = encode(backbone, DatasetSplits(SPEC, adjective_examples(16, seed=0),
                                                        adjective_examples(8, seed=1)))
    model = build(backbone)
    seen: list[tuple[bool, bool]] = []  # (training mode, FastCpuDropout active) of each backbone forward
    hook = backbone.model.register_forward_pre_hook(lambda module, args: seen.append(
        (module.training, any(isinstance(m, FastCpuDropout) for m in _get_current_function_mode_stack()))))
    try:
        fit_task(model, SPEC, train, validation, TrainConfig(**{**CFG.to_dict(), "epochs": 1}))
    finally:
        hook.remove()
        model.detach()
    assert {active for training, active in seen if training} == {True}
    assert {active for training, active in seen if not training} == {False}


def test_examples_per_second_counts_the_training_steps_not_the_validation(tiny_backbone):
    backbone = tiny_backbone("bert")
    splits = DatasetSplits(SPEC, adjective_examples(48, seed=0), adjective_examples(960, seed=1))
    train, validation = encode(backbone, splits)
    model = build(backbone)
    try:
        [log] = fit_task(model, SPEC, train, validation, TrainConfig(**{**CFG.to_dict(), "epochs": 1})).history
    finally:
        model.detach()
    assert log.examples_per_second * log.seconds > 1.5 * 48  # validating 960 examples took part of `seconds`


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["pfeiffer", "houlsby"])
def test_only_adapter_and_head_parameters_change(tiny_backbone, family, placement):
    backbone = tiny_backbone(family)
    backbone_before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    train, validation = encode(backbone, sentiment_splits(n_train=16, n_eval=8))
    model = build(backbone, placement=placement)
    try:
        names = list(model.trainable_parameters())
        assert names and all(n.startswith("heads.") or ".composition." in n for n in names), names
        initial = trainable_snapshot(model)
        fit_task(model, SPEC, train, validation, CFG)
        trained = trainable_snapshot(model)
    finally:
        model.detach()
    assert all(not torch.equal(initial[k], trained[k]) for k in initial if k.endswith("up_weight")), "adapters trained"
    assert not torch.equal(initial["heads.demo_sentiment.linear.weight"], trained["heads.demo_sentiment.linear.weight"])
    after = backbone.model.state_dict()
    assert list(after) == list(backbone_before)
    for key, value in backbone_before.items():
        assert torch.equal(after[key], value), key
    assert not any(p.requires_grad for p in backbone.model.parameters())


@pytest.mark.parametrize("head_rate", [None, 0.5])
def test_the_heads_train_at_a_rate_of_their_own_when_given_one(tiny_backbone, head_rate):
    """Adam's first step moves each parameter by its group's rate (m / sqrt(v) = sign of the gradient)."""
    backbone = tiny_backbone("bert")
    train, validation = encode(backbone, sentiment_splits(n_train=8, n_eval=8))
    model = build(backbone)
    try:
        before = trainable_snapshot(model)
        fit_task(model, SPEC, train, validation, dataclasses.replace(CFG, epochs=1, max_steps=1, head_learning_rate=head_rate))
        moved = {k: (v - before[k]).abs().max().item() for k, v in trainable_snapshot(model).items()}
    finally:
        model.detach()
    assert max(v for k, v in moved.items() if not k.startswith("heads.")) == pytest.approx(CFG.learning_rate, rel=1e-3)
    assert max(v for k, v in moved.items() if k.startswith("heads.")) == pytest.approx(head_rate or CFG.learning_rate, rel=1e-3)


def test_same_seed_gives_identical_weights(tiny_backbone):
    def run(train_seed, disturbance):
        backbone = tiny_backbone("bert")
        train, validation = encode(backbone, sentiment_splits(n_train=24, n_eval=8))
        model = build(backbone, init_seed=0)
        try:
            # the global RNG is left in a different state before each fit: the loop must seed itself
            torch.rand(disturbance)
            fit_task(model, SPEC, train, validation, TrainConfig(**{**CFG.to_dict(), "seed": train_seed}))
            return trainable_snapshot(model)
        finally:
            model.detach()

    first, second, other_seed = run(3, disturbance=1), run(3, disturbance=50), run(4, disturbance=1)
    assert_same_weights(first, second)
    assert not torch.equal(first["heads.demo_sentiment.linear.weight"], other_seed["heads.demo_sentiment.linear.weight"])


def test_resume_after_crash_equals_uninterrupted_run(tiny_backbone, tmp_path):
    splits = sentiment_splits(n_train=24, n_eval=8)

    # uninterrupted reference
    backbone = tiny_backbone("bert")
    train, validation = encode(backbone, splits)
    model = build(backbone, init_seed=0)
    try:
        reference = fit_task(model, SPEC, train, validation, CFG, checkpoint_dir=tmp_path / "reference")
        reference_weights = trainable_snapshot(model)
    finally:
        model.detach()
    assert reference.resumed_from_epoch == 0

    # crash right after epoch 1 (its checkpoint is already written)
    seen = []

    def crash_after_first(log):
        seen.append(log.epoch)
        if log.epoch == 1:
            raise Crash("simulated crash")

    model = build(backbone, init_seed=0)
    try:
        with pytest.raises(Crash):
            fit_task(model, SPEC, train, validation, CFG, checkpoint_dir=tmp_path / "ckpt", on_epoch=crash_after_first)
    finally:
        model.detach()
    assert seen == [1]
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["epoch"] == 1

    # resume with a differently initialised model: everything must come from the checkpoint
    model = build(backbone, init_seed=99)
    epochs_run = []
    try:
        result = fit_task(model, SPEC, train, validation, CFG, checkpoint_dir=tmp_path / "ckpt",
                          on_epoch=lambda log: epochs_run.append(log.epoch))
        resumed_weights = trainable_snapshot(model)
    finally:
        model.detach()
    assert result.resumed_from_epoch == 1
    assert epochs_run == [2]
    assert [h.epoch for h in result.history] == [1, 2]
    assert [h.validation for h in result.history] == [h.validation for h in reference.history]
    assert [h.train_loss for h in result.history] == [h.train_loss for h in reference.history]
    assert result.best_epoch == reference.best_epoch
    assert_same_weights(resumed_weights, reference_weights)

    # checkpoints are safetensors + JSON, no pickle
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "optimizer.safetensors", "trainable.safetensors", "trainer_state.json"]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in {".pkl", ".pickle", ".pt", ".pth", ".bin"}]

    # a finished checkpoint is not trained again
    model = build(backbone, init_seed=5)
    try:
        again = fit_task(model, SPEC, train, validation, CFG, checkpoint_dir=tmp_path / "ckpt",
                         on_epoch=lambda log: pytest.fail("a finished run trained again"))
        assert again.resumed_from_epoch == 2
        assert_same_weights(trainable_snapshot(model), reference_weights)
    finally:
        model.detach()


def test_early_stopping_keeps_best_epoch_weights(tiny_backbone):
    backbone = tiny_backbone("bert")
    train, _ = encode(backbone, sentiment_splits(n_train=16, n_eval=8))
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])
    snapshots = {}
    model = build(backbone)
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 6, "patience": 2})
    try:
        result = fit(
            model, cfg,
            train_batches=lambda epoch: ((SPEC.name, b) for b in train.batches(8, shuffle=True, seed=0, epoch=epoch)),
            steps_per_epoch=train.num_batches(8),
            validate=lambda: {"accuracy": next(scores)},
            main_metric="accuracy",
            on_epoch=lambda log: snapshots.__setitem__(log.epoch, trainable_snapshot(model)),
        )
        final = trainable_snapshot(model)
    finally:
        model.detach()
    assert result.stopped_early
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]  # 2 epochs without gain after epoch 2
    assert result.best_epoch == 2 and result.best_validation == {"accuracy": 0.7}
    assert_same_weights(final, snapshots[2])  # the best epoch's weights are left loaded
    assert not torch.equal(final["heads.demo_sentiment.linear.weight"], snapshots[4]["heads.demo_sentiment.linear.weight"])


def test_early_stopping_when_validation_is_flat(tiny_backbone):
    """With a zero learning rate nothing changes, so training stops after 1 + patience epochs."""
    backbone = tiny_backbone("bert")
    train, validation = encode(backbone, sentiment_splits(n_train=16, n_eval=8))
    model = build(backbone)
    try:
        result = fit_task(model, SPEC, train, validation,
                          TrainConfig(**{**CFG.to_dict(), "epochs": 10, "patience": 2, "learning_rate": 0.0}))
    finally:
        model.detach()
    assert result.stopped_early
    assert len(result.history) == 3 and result.best_epoch == 1


def test_full_finetune_trains_the_whole_encoder_into_its_artifact_and_hands_the_backbone_back(tiny_backbone, tmp_path):
    splits = sentiment_splits(n_train=16, n_eval=8)
    adapter_result = adapter_jobs.train_adapter(tiny_backbone("bert"), SPEC, splits, ADAPTER, CFG, tmp_path / "adapter")

    backbone = tiny_backbone("bert")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    result = train_full_finetune(backbone, SPEC, splits, CFG, tmp_path / "full")

    saved = load_file(tmp_path / "full" / "adapter.safetensors")
    changed = [k for k, v in before.items() if any(n.endswith(k) and not torch.equal(t, v) for n, t in saved.items())]
    assert any(k.startswith("encoder.layer.") for k in changed)
    assert any(k.startswith("embeddings.") for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in backbone.model.state_dict().items())  # as loaded
    assert result.trainable_params == sum(p.numel() for p in backbone.model.parameters())
    assert result.trainable_params > 10 * adapter_result.trainable_params > 0
    assert result.head_params == adapter_result.head_params == 32 * SPEC.num_labels + SPEC.num_labels
    # the backbone is left frozen and without sites
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())
    assert (tmp_path / "full" / "adapter.safetensors").is_file()


def test_full_finetune_that_fails_hands_the_backbone_back_frozen_and_without_sites(tiny_backbone):
    def fail(step, total, loss):
        raise RuntimeError("stopped in the middle of training")

    backbone = tiny_backbone("bert")
    with pytest.raises(RuntimeError, match="stopped in the middle"):
        train_full_finetune(backbone, SPEC, sentiment_splits(n_train=16, n_eval=8), CFG, on_step=fail)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())
