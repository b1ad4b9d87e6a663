"""Whole jobs in one call, usable from a notebook: train an adapter, fine-tune fully, evaluate.

Each returns a `TrainingResult` of plain numbers and writes an artifact folder; the pipeline's
Prefect tasks are thin wrappers around these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .artifacts import load_artifact, read_artifact_config, save_artifact
from .backbones import Backbone
from .compositions.single import SingleAdapter
from .configs import AdapterConfig, TrainConfig
from .data.encoding import EncodedSplit
from .data.types import DatasetSplits
from .hyperformer.layernorms import load_saved_layernorms_into
from .model import AdapterModel
from .prompts import TaskPrompt, description_embeddings
from .resources import ResourceMeter
from .task_specs import TaskSpec
from .metrics import compute_metrics
from .training import StepCallback, evaluate, fit_task, predict


@dataclass
class TrainingResult:
    metrics: dict[str, float]  # "validation_<metric>" and "test_<metric>"
    history: list[dict]
    best_epoch: int
    wall_time_s: float
    peak_memory_mb: float
    trainable_params: int
    head_params: int
    artifact_dir: Path | None = None
    extra: dict = field(default_factory=dict)
    # {"test": {"predictions": [...], "labels": [...]}}: what paired comparisons of methods resample
    predictions: dict | None = None


@dataclass
class EncodedTaskData:
    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit | None


def encode_splits(spec: TaskSpec, splits: DatasetSplits, backbone: Backbone, max_length: int) -> EncodedTaskData:
    def enc(examples):
        return EncodedSplit.from_examples(spec, examples, backbone.tokenizer, max_length) if examples else None

    return EncodedTaskData(enc(splits.train), enc(splits.validation), enc(splits.test))


def final_evaluation(model: AdapterModel, spec: TaskSpec, data: EncodedTaskData, batch_size: int,
                     precision: str = "auto") -> tuple[dict[str, float], dict | None]:
    """Validation (and test, when the task has one) metrics of the model as it is now, and its
    test predictions with their labels (None without a test set)."""
    metrics = {f"validation_{k}": v for k, v in evaluate(model, spec, data.validation, batch_size, precision).items()}
    if data.test is None:
        return metrics, None
    predictions, labels = predict(model, spec, data.test, batch_size, precision)
    metrics |= {f"test_{k}": v for k, v in compute_metrics(spec, predictions.numpy(), labels.numpy()).items()}
    return metrics, {"test": {"predictions": predictions.tolist(), "labels": labels.tolist()}}


def final_metrics(model: AdapterModel, spec: TaskSpec, data: EncodedTaskData, batch_size: int,
                  precision: str = "auto") -> dict[str, float]:
    return final_evaluation(model, spec, data, batch_size, precision)[0]


def adapter_tensors(model: AdapterModel, task: str) -> dict[str, torch.Tensor]:
    """The artifact layout of a one-adapter model: per-site adapter, head, and prompt if any."""
    tensors = {}
    for site in model.sites:
        for name, value in site.composition.adapter_state().items():
            tensors[f"sites.{site.key}.{name}"] = value
    for name, value in model.heads[task].state_dict().items():
        tensors[f"head.{name}"] = value
    if model.prompt is not None:
        tensors["prompt.embeddings"] = model.prompt.embeddings.detach()
    return tensors


def build_adapter_model(backbone: Backbone, spec: TaskSpec, adapter: AdapterConfig, *, with_prompt: bool = False) -> AdapterModel:
    model = AdapterModel(backbone, adapter.placement)
    model.set_compositions(lambda site: SingleAdapter(backbone.hidden_size, adapter))
    model.add_head(spec)
    if with_prompt:
        model.prompt = TaskPrompt(description_embeddings(backbone, spec.description))
    return model


def artifact_config(method: str, backbone: Backbone, spec: TaskSpec, adapter: AdapterConfig | None,
                    train: TrainConfig, splits: DatasetSplits, metrics: dict, **extra) -> dict:
    return {
        "method": method,
        "adapter": adapter.to_dict() if adapter else None,
        "backbone": backbone.describe(),
        "task": {"name": spec.name, "problem": spec.problem, "label_names": spec.label_names,
                 "description": spec.description},
        "training": train.to_dict(),
        "data_digest": splits.digest(),
        "metrics": metrics,
        **extra,
    }


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
    torch.manual_seed(train.seed)  # the adapter and head initialisation depend on the seed alone
    model = build_adapter_model(backbone, spec, adapter, with_prompt=with_prompt)
    data = encode_splits(spec, splits, backbone, train.max_length)
    try:
        with ResourceMeter() as meter:
            fitted = fit_task(model, spec, data.train, data.validation, train,
                         checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, on_step=on_step)
        metrics, predictions = final_evaluation(model, spec, data, train.eval_batch_size, train.precision)
        counts = model.count_parameters()
        config = artifact_config("prompt_adapter" if with_prompt else "adapter", backbone, spec, adapter, train,
                                 splits, metrics, best_epoch=fitted.best_epoch)
        save_artifact(output_dir, adapter_tensors(model, spec.name), config)
    finally:
        model.detach()
    return TrainingResult(metrics, fitted.history_dicts(), fitted.best_epoch, meter.seconds, meter.peak_memory_mb,
                          counts["excluding_heads"], counts["heads"], Path(output_dir), predictions=predictions)


def load_adapter_model(adapter_dir: Path, backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    """Rebuild the model an adapter artifact was trained as (checks the backbone fingerprint)."""
    config, tensors = load_artifact(adapter_dir, backbone)
    adapter = AdapterConfig(**config["adapter"])
    model = build_adapter_model(backbone, spec, adapter, with_prompt="prompt.embeddings" in tensors)
    for site in model.sites:
        prefix = f"sites.{site.key}."
        site.composition.load_adapter_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    model.heads[spec.name].load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
    if model.prompt is not None:
        with torch.no_grad():
            model.prompt.embeddings.copy_(tensors["prompt.embeddings"])
    load_saved_layernorms_into(model, tensors)  # backbone tensors an artifact carries (HyperFormer's LayerNorms)
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
        return final_metrics(model, spec, data, batch_size or training["eval_batch_size"],
                             training.get("precision", "fp32"))
    finally:
        model.detach()


def train_full_finetune(
    backbone: Backbone,
    spec: TaskSpec,
    splits: DatasetSplits,
    train: TrainConfig,
    output_dir: Path | None = None,
    *,
    checkpoint_dir: Path | None = None,
    on_epoch=None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """The full fine-tuning baseline: every backbone weight trains, no adapters.

    The backbone is updated in place, so pass a backbone loaded for this job alone. The
    artifact (when `output_dir` is given) holds the whole encoder and head.
    """
    torch.manual_seed(train.seed)
    model = AdapterModel(backbone, "pfeiffer")
    model.add_head(spec)
    model.encoder.requires_grad_(True)
    data = encode_splits(spec, splits, backbone, train.max_length)
    with ResourceMeter() as meter:
        fitted = fit_task(model, spec, data.train, data.validation, train,
                     checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, on_step=on_step)
    metrics, predictions = final_evaluation(model, spec, data, train.eval_batch_size, train.precision)
    counts = model.count_parameters()
    model.detach()
    model.encoder.requires_grad_(False)
    if output_dir is not None:
        tensors = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
        tensors |= {f"head.{k}": v for k, v in model.heads[spec.name].state_dict().items()}
        save_artifact(output_dir, tensors, artifact_config("full_finetune", backbone, spec, None, train, splits, metrics,
                                                           best_epoch=fitted.best_epoch))
    return TrainingResult(metrics, fitted.history_dicts(), fitted.best_epoch, meter.seconds, meter.peak_memory_mb,
                          counts["excluding_heads"], counts["heads"], Path(output_dir) if output_dir else None,
                          predictions=predictions)


def load_full_finetune_model(folder: Path, backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    """Rebuild a `train_full_finetune` model: its encoder weights are copied into `backbone` in place."""
    _, tensors = load_artifact(folder, backbone)
    encoder = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    backbone.model.load_state_dict(encoder)  # before the sites wrap the modules and change their names
    model = AdapterModel(backbone, "pfeiffer")
    model.add_head(spec).load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
    return model
