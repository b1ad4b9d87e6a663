"""The backbone's state has one owner (`backbone_state`): every model that computes with its own values of
backbone tensors hands the backbone back exactly as loaded after training, evaluation and inference, and
several such models share one backbone in one process, each computing as it does alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from peft_core.artifact_layout import BACKBONE, single_adapter_tensors
from peft_core.artifacts import artifact_config, save_artifact, task_entries
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data.types import DatasetSplits
from peft_core.errors import BackboneError
from peft_core.full_finetune import train_full_finetune
from peft_core.hyperformer import HyperNetConfig
from peft_core.hyperformer.few_shot import fit_hyperformer_transfer
from peft_core.inference import load_fitted_model, predict
from peft_core.model import AdapterModel
from peft_core.model_set import FittedModelSet
from peft_core.multitask import materialise_adapter, train_multitask
from peft_core.adapter_jobs import evaluate_adapter, load_adapter_model, train_adapter
from peft_core.task_specs import get_task
from peft_core.transfer import fit_transfer

from tests.helpers.core import sentiment_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SENTIMENT, SST2 = get_task("demo_sentiment"), get_task("sst2")
ADAPTER = AdapterConfig(reduction_factor=4)
TRAIN = TrainConfig(epochs=1, max_steps=2, batch_size=8, eval_batch_size=16, learning_rate=1e-2, precision="fp32")
HYPERNETWORK = HyperNetConfig(embedding_dim=8, projector_hidden_dim=16, projected_dim=8)
WRAPPED_LAYERNORM = "encoder.layer.0.output.LayerNorm"  # BERT's FFN output LayerNorm: a pfeiffer site wraps it


def splits(spec=SENTIMENT, seed: int = 0) -> DatasetSplits:
    made = sentiment_splits(16, 8, seed)
    return DatasetSplits(spec, made.train, made.validation, made.test)


def as_loaded(backbone) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in backbone.model.state_dict().items()}


def differences(backbone, loaded: dict[str, torch.Tensor]) -> list[str]:
    """What differs from the backbone as loaded: a tensor's value, a name (a site left on), a trainable flag."""
    state = backbone.model.state_dict()
    renamed = sorted(set(state) ^ set(loaded))
    changed = [n for n, v in loaded.items() if n in state and not torch.equal(state[n], v)]
    return renamed + changed + [f"{n} trains" for n, p in backbone.model.named_parameters() if p.requires_grad]


class Fits:
    """One fitted folder of every kind that overrides backbone tensors, all trained on one shared backbone,
    and what differed from the backbone as loaded after each job."""

    def __init__(self, backbone, root):
        self.root, self.after_job = root, {}
        loaded = as_loaded(backbone)

        def job(name, run):
            run(root / name)
            self.after_job[name] = differences(backbone, loaded)

        sources = [root / "sst2", root / "cola"]
        for seed, source in enumerate(sources):
            train_adapter(backbone, get_task(source.name), splits(get_task(source.name), seed + 1), ADAPTER, TRAIN,
                          source, with_prompt=True)
        for name, seed in (("pemt", 1), ("pemt_other", 2)):
            job(name, lambda out, seed=seed: fit_transfer(backbone, SENTIMENT, splits(), "pemt", sources,
                                                          replace(TRAIN, seed=seed), out))
        job("full_finetune", lambda out: train_full_finetune(backbone, SENTIMENT, splits(), TRAIN, out))
        for method in ("hyperformer", "full_multitask"):
            job(method, lambda out, method=method: train_multitask(
                backbone, [SENTIMENT, SST2], {SENTIMENT.name: splits(), SST2.name: splits(SST2, 3)}, method, ADAPTER,
                TRAIN, out, hypernetwork=HYPERNETWORK))
        job("hyperformer_adapter", lambda out: materialise_adapter(root / "hyperformer", backbone, SST2.name, out))
        job("hyperformer_few_shot", lambda out: fit_hyperformer_transfer(backbone, SENTIMENT, splits(),
                                                                         root / "hyperformer", TRAIN, out))


@pytest.fixture(scope="module")
def fits(tiny_backbone, tmp_path_factory) -> Fits:
    return Fits(tiny_backbone(), tmp_path_factory.mktemp("fits"))


# the fitted folders whose models override backbone tensors -> the task to load (a joint model's) or None
TARGETS = {"pemt": None, "pemt_other": None, "full_finetune": None, "hyperformer": SST2.name,
           "full_multitask": SENTIMENT.name, "hyperformer_adapter": None, "hyperformer_few_shot": None}


@pytest.mark.parametrize("job", ["pemt", "full_finetune", "hyperformer", "full_multitask", "hyperformer_adapter",
                                 "hyperformer_few_shot"])
def test_training_hands_the_backbone_back_as_loaded(fits, job):
    assert fits.after_job[job] == []


ROWS = [{"sentence": text} for text in ("the film was good", "we hated the very dull meal", "it was not fine")]


def answers_alone(fits, tiny_backbone, name: str) -> list[dict]:
    fitted = load_fitted_model(fits.root / name, tiny_backbone(), task=TARGETS[name], device="cpu")
    try:
        return predict(fitted, ROWS, batch_size=1)
    finally:
        fitted.close()


@pytest.mark.parametrize("name", list(TARGETS))
def test_inference_and_evaluation_hand_the_backbone_back_as_loaded(fits, tiny_backbone, name):
    backbone = tiny_backbone()
    loaded = as_loaded(backbone)
    fitted = load_fitted_model(fits.root / name, backbone, task=TARGETS[name], device="cpu")
    assert differences(backbone, loaded)  # the model computes with values of its own
    predict(fitted, ROWS)
    fitted.close()
    assert differences(backbone, loaded) == []
    if name == "hyperformer_adapter":
        evaluate_adapter(fits.root / name, backbone, SST2, splits(SST2))
        assert differences(backbone, loaded) == []


def test_models_overriding_the_same_tensors_predict_interleaved_as_each_alone(fits, tiny_backbone):
    names = ["pemt", "full_finetune", "pemt_other", "hyperformer_few_shot", "hyperformer"]
    alone = {name: answers_alone(fits, tiny_backbone, name) for name in names}
    backbone = tiny_backbone()
    loaded = as_loaded(backbone)
    for name in names + names[::-1]:  # one after the other on one backbone, each closed before the next
        fitted = load_fitted_model(fits.root / name, backbone, task=TARGETS[name], device="cpu")
        assert predict(fitted, ROWS, batch_size=1) == alone[name]
        fitted.close()
    models = FittedModelSet({name: (fits.root / name, TARGETS[name]) if TARGETS[name] else fits.root / name
                             for name in names}, backbone, device="cpu")
    assert differences(backbone, loaded) == []  # every model parked
    rows = [{**row, "model": name} for row in ROWS for name in names + names[::-1]]  # a switch on every row
    answers = models.predict(rows, batch_size=1)
    for name in names:
        assert [a for a, row in zip(answers, rows) if row["model"] == name] == [a for a in alone[name] for _ in "ab"]
    models.close()
    assert differences(backbone, loaded) == []


def test_a_name_with_base_layer_resolves_to_the_tensor_as_loaded(tiny_backbone):
    backbone = tiny_backbone("bert")
    state = backbone.state
    model = AdapterModel(backbone, "pfeiffer")
    try:
        live = dict(backbone.model.named_parameters())
        assert f"{WRAPPED_LAYERNORM}.weight" not in live  # the site renamed it
        wrapped = f"{WRAPPED_LAYERNORM}.base_layer.weight"
        assert state.canonical(wrapped) == f"{WRAPPED_LAYERNORM}.weight"
        assert state.tensor(wrapped) is state.tensor(f"{WRAPPED_LAYERNORM}.weight") is live[wrapped]
        with pytest.raises(BackboneError, match="no tensor 'encoder.layer.0.output.base_layer.weight'"):
            state.canonical("encoder.layer.0.output.base_layer.weight")
    finally:
        model.detach()


def test_an_artifact_overriding_a_wrapped_layernorm_loads_by_either_name_and_is_put_back(tiny_backbone, tmp_path):
    backbone = tiny_backbone("bert")
    loaded = as_loaded(backbone)
    train_adapter(backbone, SENTIMENT, splits(), ADAPTER, TRAIN, tmp_path / "adapter")
    model = load_adapter_model(tmp_path / "adapter", backbone, SENTIMENT)
    tensors = single_adapter_tensors({site.key: site.composition.adapter_state() for site in model.sites},
                                     model.heads[SENTIMENT.name].state_dict())
    model.detach()
    weight, bias = torch.full((32,), 2.0), torch.full((32,), 0.5)
    tensors |= {f"{BACKBONE}{WRAPPED_LAYERNORM}.weight": weight, f"{BACKBONE}{WRAPPED_LAYERNORM}.base_layer.bias": bias}
    save_artifact(tmp_path / "overriding", tensors, artifact_config("adapter", backbone, ADAPTER, TRAIN.to_dict(), {},
                                                                    **task_entries(SENTIMENT, None)))
    model = load_adapter_model(tmp_path / "overriding", backbone, SENTIMENT)
    try:
        assert torch.equal(backbone.state.tensor(f"{WRAPPED_LAYERNORM}.weight"), weight)
        assert torch.equal(backbone.state.tensor(f"{WRAPPED_LAYERNORM}.bias"), bias)
    finally:
        model.detach()
    assert differences(backbone, loaded) == []


def test_one_live_model_overrides_a_tensor_at_a_time_and_parking_serialises_them(tiny_backbone):
    backbone = tiny_backbone("bert")
    loaded = as_loaded(backbone)
    state, first, second = backbone.state, object(), object()
    name = "embeddings.LayerNorm.weight"
    state.assign(first, {name: torch.full((32,), 3.0)})
    with pytest.raises(ValueError, match="overridden by another live model"):
        state.override(second, [name], trainable=True)
    state.park(first)
    assert differences(backbone, loaded) == []
    state.override(second, [name], trainable=True)
    state.assign(second, {name: torch.full((32,), 4.0)})
    with pytest.raises(ValueError, match="overridden by another live model"):
        state.resume(first)
    state.release(second)
    state.resume(first)
    assert torch.equal(state.tensor(name), torch.full((32,), 3.0)) and state.values(first).keys() == {name}
    state.release(first)
    assert differences(backbone, loaded) == []
