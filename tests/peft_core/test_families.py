"""Every method on a tiny random model of every backbone family: it builds, trains two steps, saves,
reloads, and the reloaded model predicts what evaluation computed (labels row by row, the recorded
test metrics). Encoders pool the mean, T5 runs its encoder, decoder-only models pool the last token."""

from __future__ import annotations

import pytest

from peft_core.adapter_jobs import train_adapter
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.full_finetune import train_full_finetune
from peft_core.hyperformer.few_shot import fit_hyperformer_transfer
from peft_core.inference import load_fitted_model
from peft_core.method_names import (
    ALL_METHODS, BASELINE_METHODS, HYPERFORMER_TRANSFER_METHODS, JOINT_MODEL_OF, MULTITASK_METHODS, TRANSFER_METHODS,
)
from peft_core.multitask import train_multitask
from peft_core.task_specs import get_task
from peft_core.transfer import fit_transfer

from tests.helpers.core import sentiment_splits
from tests.helpers.predictions import assert_equals_evaluation, demo_splits

pytestmark = pytest.mark.usefixtures("one_thread")

TESTED_FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "t5", "llama", "qwen2", "gpt2")
TARGET = get_task("demo_sentiment")
SOURCES = (get_task("sst2"), get_task("cola"))  # two-label single-sentence specs trained on sentiment data
ADAPTER = AdapterConfig(reduction_factor=4)
TRAIN = TrainConfig(epochs=1, max_steps=2, batch_size=8, eval_batch_size=16, max_length=24, learning_rate=1e-2)


def test_every_method_is_covered():
    assert set(BASELINE_METHODS + TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS + MULTITASK_METHODS) == set(ALL_METHODS)


@pytest.fixture(scope="module", params=TESTED_FAMILIES)
def family_setup(request, tiny_backbone, tmp_path_factory):
    """A family's backbone, two source adapters with prompts, and the joint HyperFormer(++)s of the sources."""
    backbone = tiny_backbone(request.param)
    root = tmp_path_factory.mktemp(request.param)
    sources = []
    for seed, spec in enumerate(SOURCES):
        train_adapter(backbone, spec, sentiment_splits(16, 8, seed=seed + 1), ADAPTER, TRAIN, root / spec.name,
                      with_prompt=True)
        sources.append(root / spec.name)
    joints = {}
    for variant in set(JOINT_MODEL_OF.values()):
        joints[variant] = root / variant
        train_multitask(backbone, list(SOURCES), {s.name: sentiment_splits(16, 8, seed=i + 1) for i, s in enumerate(SOURCES)},
                        variant, ADAPTER, TRAIN, joints[variant])
    return backbone, sources, joints


def fit(method: str, backbone, sources, joints, folder) -> dict:
    """Fit `method` for the target; its test metrics as `test_<metric>`."""
    splits = demo_splits(TARGET)
    if method == "adapter":
        return train_adapter(backbone, TARGET, splits, ADAPTER, TRAIN, folder).metrics
    if method == "full_finetune":
        return train_full_finetune(backbone, TARGET, splits, TRAIN, folder).metrics
    if method in TRANSFER_METHODS:
        options = {"select": "all"} if method == "adaptersoup" else None
        return fit_transfer(backbone, TARGET, splits, method, sources, TRAIN, folder, method_options=options).metrics
    if method in HYPERFORMER_TRANSFER_METHODS:
        return fit_hyperformer_transfer(backbone, TARGET, splits, joints[JOINT_MODEL_OF[method]], TRAIN, folder).metrics
    metrics = train_multitask(backbone, [TARGET, SOURCES[0]], {TARGET.name: splits, SOURCES[0].name: sentiment_splits(16, 8)},
                              method, ADAPTER, TRAIN, folder).metrics
    prefix = f"{TARGET.name}_"
    return {name.removeprefix(prefix): value for name, value in metrics.items() if name.startswith(prefix)}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_trains_saves_reloads_and_predicts_on_every_family(family_setup, method, tmp_path):
    backbone, sources, joints = family_setup
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    metrics = fit(method, backbone, sources, joints, tmp_path / method)
    fitted = load_fitted_model(tmp_path / method, backbone, task=TARGET.name)
    try:
        assert_equals_evaluation(fitted, metrics)
    finally:
        fitted.close()
    after = backbone.model.state_dict()
    assert all(after[k].equal(v) for k, v in before.items()), "the backbone is left as it was loaded"
