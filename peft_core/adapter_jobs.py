"""Single-adapter jobs in one call, usable from a notebook: train an adapter, rebuild it, evaluate it.

`train_adapter` returns a `TrainingResult` of plain numbers and writes an artifact folder; the
pipeline's Prefect tasks are thin wrappers around these.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .artifact_layout import (
    ADAPTER, HEAD, PROMPT_ADAPTER, PROMPT_EMBEDDINGS, backbone_overrides, single_adapter_tensors, site_tensors, under,
)
from .adapter_kinds import placement_of
from .artifacts import artifact_config, load_artifact, read_artifact_config, save_artifact, task_entries
from .backbones import Backbone
from .compositions.single import SingleAdapter
from .configs import AdapterConfig, EvalSettings, TrainConfig
from .data.types import DatasetSplits
from .errors import ArtifactError
from .jobs import TrainingResult, encode_splits, final_metrics, fit_single_task, job_model
from .model import AdapterModel
from .prompts import TaskPrompt, description_embeddings
from .task_specs import TaskSpec
from .text_model import adapter_model
from .training import StepCallback


def adapter_tensors(model: AdapterModel, task: str) -> dict[str, torch.Tensor]:
    """The artifact layout of a one-adapter model: per-site adapter, head, and prompt if any."""
    return single_adapter_tensors({site.key: site.composition.adapter_state() for site in model.sites},
                                  model.heads[task].state_dict(),
                                  model.prompt.embeddings.detach() if model.prompt is not None else None)


def build_adapter_model(backbone: Backbone, spec: TaskSpec, adapter: AdapterConfig, *, with_prompt: bool = False) -> AdapterModel:
    model = adapter_model(backbone, placement_of(adapter))
    model.set_compositions(lambda site: SingleAdapter.at(site, adapter))
    model.add_head(spec)
    if with_prompt:
        model.prompt = TaskPrompt(description_embeddings(backbone, spec.description))
    return model


def train_adapter(
    backbone: Backbone,
    spec: TaskSpec,
    splits: DatasetSplits,
    adapter: AdapterConfig,
    train: TrainConfig,
    output_dir: Path,
    *,
    with_prompt: bool = False,
    checkpoint_dir: Path | None = None,
    on_epoch=None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Train one adapter (and, for PEMT sources, its task prompt) with the backbone frozen."""
    with job_model(train, lambda: build_adapter_model(backbone, spec, adapter, with_prompt=with_prompt)) as model:
        data = encode_splits(spec, splits, backbone, train.max_length)
        run = fit_single_task(model, spec, data, train, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch,
                              on_step=on_step)
        config = artifact_config(PROMPT_ADAPTER if with_prompt else ADAPTER, backbone, adapter, train.to_dict(),
                                 run.metrics, **task_entries(spec, splits.digest()), best_epoch=run.fit.best_epoch)
        save_artifact(output_dir, adapter_tensors(model, spec.name), config)
    return run.result(output_dir)


def load_adapter_model(adapter_dir: Path, backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    """Rebuild the model an adapter artifact was trained as (checks the backbone fingerprint)."""
    config, tensors = load_artifact(adapter_dir, backbone)
    if backbone.output == "head" and not under(tensors, HEAD):
        raise ArtifactError(f"adapter {adapter_dir} has no task head (a '{config['method']}' artifact, a source "
                            "for transfer methods); fit a transfer method over it to predict")
    adapter = AdapterConfig(**config["adapter"])
    model = build_adapter_model(backbone, spec, adapter, with_prompt=PROMPT_EMBEDDINGS in tensors)
    for site in model.sites:
        site.composition.load_adapter_state(site_tensors(tensors, site.key))
    model.heads[spec.name].load_state_dict(under(tensors, HEAD))
    if model.prompt is not None:
        with torch.no_grad():
            model.prompt.embeddings.copy_(tensors[PROMPT_EMBEDDINGS])
    model.set_backbone_values(backbone_overrides(tensors))
    return model


def evaluate_adapter(adapter_dir: Path, backbone: Backbone, spec: TaskSpec, splits: DatasetSplits,
                     max_length: int | None = None, batch_size: int | None = None) -> dict[str, float]:
    """Metrics of a saved adapter on validation and test, recomputed from its artifact.

    Inputs are truncated and batched as in training (the artifact records both) unless overridden.
    """
    training = read_artifact_config(adapter_dir)["training"]
    model = load_adapter_model(adapter_dir, backbone, spec)
    try:
        data = encode_splits(spec, splits, backbone, max_length or training["max_length"])
        settings = EvalSettings(batch_size or training["eval_batch_size"], training.get("precision", "fp32"))
        return final_metrics(model, spec, data, settings)
    finally:
        model.detach()
