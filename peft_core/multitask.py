"""Joint multi-task training (METHODS §2, §3): HyperFormer, HyperFormer++ and two baselines.

- "hyperformer" / "hyperformer_plus_plus": a hypernetwork generates every task's houlsby adapters.
- "shared_adapter": one adapter per site shared by all tasks, one head per task.
- "full_multitask": every encoder weight trains, one head per task (the model overrides every
  backbone tensor, as full fine-tuning does).
On a backbone loaded for text (T5) the HyperFormers and the shared adapter answer in words
(`text_model`), with adapters in the decoder too; full multi-task training has no text form.

Every batch holds one task, drawn by temperature sampling; the epoch is chosen by the average of
the tasks' main validation metrics. The saved folder holds the trainable parameters by name plus
a JSON config; `materialise_adapter` turns one task of a HyperFormer into a plain adapter artifact.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from statistics import mean

from .adapter_kinds import placement_of
from .artifact_layout import MATERIALISED_ADAPTER
from .artifacts import (
    artifact_config, joint_task_specs, load_artifact, read_artifact_config, save_artifact, task_entries,
)
from .backbones import Backbone
from .compositions.single import SingleAdapter
from .configs import AdapterConfig, EvalSettings, TrainConfig
from .data.types import DatasetSplits
from .errors import ArtifactError, ConfigError
from .hyperformer import HyperFormerModel, HyperNetConfig, load_hyperformer, make_hyperformer, rebuild_hyperformer
from .model import AdapterModel
from .method_names import HYPERFORMER_VARIANTS, MULTITASK_METHODS, MultitaskMethod, text_output_problem
from .jobs import EncodedTaskData, TrainingResult, encode_splits, final_metrics, fit_and_evaluate, job_model
from .sampling import TemperatureSampler
from .task_specs import TaskSpec
from .text_model import adapter_model
from .training import StepCallback, evaluate, fit


def build_multitask_model(backbone: Backbone, specs: list[TaskSpec], method: MultitaskMethod,
                          adapter: AdapterConfig, hypernetwork: HyperNetConfig | None = None) -> AdapterModel:
    """The untrained model of `method`, with one head per task; `hypernetwork`'s variant is `method`'s."""
    if backbone.output == "text" and (problem := text_output_problem(method)):
        raise ConfigError(problem)
    if method in HYPERFORMER_VARIANTS:
        if adapter.kind != "bottleneck":
            raise ConfigError(f"{method} generates bottleneck adapters; adapter kind {adapter.kind!r} is not supported "
                              "for it (set adapter.kind: bottleneck)")
        return make_hyperformer(backbone, specs, adapter, dataclasses.replace(hypernetwork or HyperNetConfig(), variant=method))
    if method == "shared_adapter":
        model = adapter_model(backbone, placement_of(adapter))
        model.set_compositions(lambda site: SingleAdapter.at(site, adapter))
    elif method == "full_multitask":
        model = AdapterModel(backbone, "pfeiffer")  # sites stay empty: exact pass-throughs
        model.override_backbone(backbone.state.names, trainable=True)
    else:
        raise ConfigError(f"unknown multi-task method {method!r}; use one of {', '.join(MULTITASK_METHODS)}")
    for spec in specs:
        model.add_head(spec)
    return model


def train_multitask(
    backbone: Backbone,
    specs: list[TaskSpec],
    splits: dict[str, DatasetSplits],
    method: MultitaskMethod,
    adapter: AdapterConfig,
    train: TrainConfig,
    output_dir: Path,
    *,
    temperature: float = 10.0,
    hypernetwork: HyperNetConfig | None = None,
    checkpoint_dir: Path | None = None,
    on_epoch=None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Train all `specs` jointly. `result.metrics` has `{task}_validation_{metric}`,
    `{task}_test_{metric}` (tasks with a test set), `average_validation` and, when every task has
    a test set, `average_test`."""
    missing = [s.name for s in specs if s.name not in splits]
    if missing:
        raise ConfigError(f"no data given for task(s) {', '.join(missing)}; pass their DatasetSplits in `splits`")
    sampler = TemperatureSampler({s.name: len(splits[s.name].train) for s in specs}, temperature, train.seed)
    data = {s.name: encode_splits(s, splits[s.name], backbone, train.max_length) for s in specs}
    no_validation = [name for name, d in data.items() if d.validation is None]
    if no_validation:
        raise ConfigError(f"task(s) {', '.join(no_validation)} have no validation examples; model selection needs them")

    with job_model(train, lambda: build_multitask_model(backbone, specs, method, adapter, hypernetwork)) as model:
        steps_per_epoch = sum(d.train.num_batches(train.batch_size) for d in data.values())
        train_splits = {name: d.train for name, d in data.items()}
        run = fit_and_evaluate(
            model,
            lambda: fit(
                model, train,
                train_batches=lambda epoch: sampler.batches(train_splits, train.batch_size, epoch, steps_per_epoch),
                steps_per_epoch=steps_per_epoch,
                validate=lambda: validation_scores(model, specs, data, train.evaluation),
                main_metric="average",
                checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, on_step=on_step,
            ),
            lambda: (multitask_metrics(model, specs, data, train.evaluation), None),
        )
        hyperformer = isinstance(model, HyperFormerModel)
        extra = {"sampling_probabilities": sampler.probabilities}
        if hyperformer:
            extra["parameter_breakdown"] = model.closed_form_parameter_count()
        config = artifact_config(
            method, backbone, model.adapter_config if hyperformer else adapter, train.to_dict(), run.metrics,
            hypernetwork=model.hypernetwork.config.to_dict() if hyperformer else None,
            tasks=[{"spec": s.to_json(), "train_examples": len(splits[s.name].train),
                    "data_digest": splits[s.name].digest()} for s in specs],
            temperature=temperature if math.isfinite(temperature) else "inf",
            sampling_probabilities=sampler.probabilities, best_epoch=run.fit.best_epoch, parameters=run.parameters,
        )
        save_artifact(output_dir, model.trainable_parameters(), config)
    return run.result(output_dir, extra)


def validation_scores(model: AdapterModel, specs: list[TaskSpec], data: dict[str, EncodedTaskData],
                      settings: EvalSettings) -> dict[str, float]:
    """`{task}_{metric}` on every task's validation split, and `average` of the main metrics."""
    scores = {}
    for spec in specs:
        split = data[spec.name].validation
        scores |= {f"{spec.name}_{k}": v for k, v in evaluate(model, spec, split, settings).items()}
    return scores | {"average": mean(scores[f"{s.name}_{s.main_metric}"] for s in specs)}


def multitask_metrics(model: AdapterModel, specs: list[TaskSpec], data: dict[str, EncodedTaskData],
                      settings: EvalSettings) -> dict[str, float]:
    metrics = {}
    for spec in specs:
        task_metrics = final_metrics(model, spec, data[spec.name], settings)
        metrics |= {f"{spec.name}_{k}": v for k, v in task_metrics.items()}
    for split in ("validation", "test"):
        mains = [metrics.get(f"{s.name}_{split}_{s.main_metric}") for s in specs]
        if all(v is not None for v in mains):
            metrics[f"average_{split}"] = mean(mains)
    return metrics


def load_multitask_model(folder: Path, backbone: Backbone) -> AdapterModel:
    """Rebuild a model `train_multitask` saved (checks the backbone fingerprint).

    A HyperFormer's LayerNorms and a full multi-task model's encoder override `backbone`'s until
    `detach()`.
    """
    config, tensors = load_artifact(folder, backbone)
    if config.get("method") not in MULTITASK_METHODS:
        raise ArtifactError(f"{folder} holds a {config.get('method')!r} artifact, not a multi-task model; "
                            f"load it with the loader of that method")
    if config["method"] in HYPERFORMER_VARIANTS:
        return rebuild_hyperformer(backbone, config, tensors, folder)
    model = build_multitask_model(backbone, joint_task_specs(config), config["method"],
                                  AdapterConfig(**config["adapter"]))
    model.load_saved_parameters(model.trainable_parameters(), tensors, folder,
                                f"{config['method']}: re-run the multi-task stage")
    return model


def materialise_adapter(source: Path | HyperFormerModel, backbone: Backbone, task: str, output_dir: Path) -> Path:
    """Write `task`'s generated adapters as a plain single-adapter artifact (houlsby,
    `layer_norm_after=True`, plus the trained backbone LayerNorms) that
    `adapter_jobs.load_adapter_model` loads and that computes what the HyperFormer computes for `task`.
    `source` is a folder `train_multitask` wrote or a HyperFormer in memory.
    """
    from_folder = not isinstance(source, HyperFormerModel)
    model = load_hyperformer(source, backbone) if from_folder else source
    saved = read_artifact_config(source) if from_folder else {}
    try:
        model.hypernetwork.task_embeddings.index(task)  # a ConfigError naming the known tasks
        spec = model.task_specs[task]
        entry = next((e for e in saved.get("tasks", []) if e["spec"]["name"] == task), {})
        joint_metrics = saved.get("metrics", {})
        metrics = {f"{split}_{m}": joint_metrics[f"{task}_{split}_{m}"] for split in ("validation", "test")
                   for m in spec.metrics if f"{task}_{split}_{m}" in joint_metrics}
        config = artifact_config(
            MATERIALISED_ADAPTER, backbone, model.adapter_config, saved.get("training"), metrics,
            **task_entries(spec, entry.get("data_digest")),
            materialised_from={"method": model.hypernetwork.config.variant,
                               "folder": str(source) if from_folder else None},
        )
        return save_artifact(output_dir, model.materialised_tensors(task), config)
    finally:
        if from_folder:
            model.detach()
