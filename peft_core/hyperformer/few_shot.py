"""HyperFormer few-shot transfer (METHODS §2a): adapt a jointly trained hypernetwork to a new task.

    result = fit_hyperformer_transfer(backbone, get_task("rte"), splits, Path("joint/hyperformer_plus_plus"),
                                      TrainConfig(max_steps=200), Path("fits/rte"), init_from="mnli")

The target is new to the hypernetwork: it gets its own task embedding, a copy of a named source
task's embedding (`init_from="mnli"`, or one per target: `{"rte": "mnli", "default": "mean"}`) or
the mean of every source's (`"mean"`), and a new head. By default (the paper's procedure) the
model is then fine-tuned on the target's examples: the embedding, the head, the hypernetwork (layer
and position embeddings, projector, generators) and the backbone LayerNorms it was trained with
all train; `train_hypernetwork=False` trains the embedding and the head alone. Everything else of
the joint model is copied, so the fitted folder stands alone:
the target's embedding, the hypernetwork, the LayerNorms and the head (safetensors), and a JSON
config naming the joint model (folder, weights fingerprint, tasks), `init_from` and what trained.
The joint model's LayerNorms override the shared backbone's while the target model lives; `detach()`
(called on every exit of the fit) puts the backbone back as it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..artifact_layout import HEAD, HYPERNETWORK, backbone_overrides, prefixed, under
from ..artifacts import (
    artifact_config, load_artifact, read_artifact_config, save_artifact, task_entries, weights_fingerprint,
)
from ..backbones import Backbone
from ..configs import AdapterConfig, TrainConfig
from ..data.types import DatasetSplits
from ..errors import ArtifactError, ConfigError
from ..few_shot_options import MEAN, FewShotOptions
from ..jobs import TrainingResult, encode_splits, fit_single_task, job_model
from ..method_names import FEW_SHOT_SUFFIX, HYPERFORMER_TRANSFER_METHODS
from ..task_specs import TaskSpec
from ..training import StepCallback
from .hypernetwork import HyperNetConfig
from .layernorms import layernorm_parameters, layernorm_tensors
from .model import HyperFormerModel, load_hyperformer, make_hyperformer

TASK_EMBEDDING = "task_embeddings.weight"  # in the hypernetwork's state


@dataclass
class JointHyperFormer:
    """What a target model copies from a jointly trained HyperFormer(++) folder."""

    method: str
    adapter: AdapterConfig
    hypernetwork: HyperNetConfig
    tasks: list[str]
    hypernetwork_state: dict[str, torch.Tensor]
    layernorms: dict[str, torch.Tensor]  # artifact layout: backbone overrides, backbone.<path>
    described: dict

    def embedding_for(self, init_from: str) -> torch.Tensor:
        embeddings = self.hypernetwork_state[TASK_EMBEDDING]
        if init_from == MEAN:
            return embeddings.mean(dim=0)
        if init_from not in self.tasks:
            raise ConfigError(f"init_from {init_from!r} is not a task of the joint model; use '{MEAN}' or one of: "
                              f"{', '.join(self.tasks)}")
        return embeddings[self.tasks.index(init_from)].clone()


def read_joint_hyperformer(folder: Path, backbone: Backbone) -> JointHyperFormer:
    """The joint model's hypernetwork, embeddings and LayerNorms; the backbone is left as it was."""
    folder = Path(folder)
    saved = read_artifact_config(folder)
    joint = load_hyperformer(folder, backbone)  # checks the method and the backbone fingerprint
    try:
        return JointHyperFormer(
            method=saved["method"], adapter=joint.adapter_config, hypernetwork=joint.hypernetwork.config,
            tasks=list(joint.tasks),
            hypernetwork_state={k: v.detach().clone() for k, v in joint.hypernetwork.state_dict().items()},
            layernorms=layernorm_tensors(backbone),
            described={"method": saved["method"], "folder": str(folder.resolve()),
                       "fingerprint": weights_fingerprint(folder),
                       "tasks": {e["spec"]["name"]: e["data_digest"] for e in saved["tasks"]}},
        )
    finally:
        joint.detach()


def _train_only(model: HyperFormerModel, options: FewShotOptions) -> None:
    """Freeze what `options` keeps from the joint model (the task embedding and head always train)."""
    if options.train_hypernetwork:
        return
    model.hypernetwork.requires_grad_(False)
    model.hypernetwork.task_embeddings.weight.requires_grad_(True)
    model.override_backbone(layernorm_parameters(model.backbone_info), trainable=False)


def build_hyperformer_transfer_model(backbone: Backbone, spec: TaskSpec, joint: JointHyperFormer | Path,
                                     options: FewShotOptions = FewShotOptions()) -> HyperFormerModel:
    """The untrained target model: a HyperFormer of `spec` alone, the joint model's hypernetwork and
    LayerNorms, the embedding `options.init_from` says for `spec`, a new head (initialised from the
    current seed)."""
    if not isinstance(joint, JointHyperFormer):
        joint = read_joint_hyperformer(joint, backbone)
    init = joint.embedding_for(options.init_from_for(spec.name))
    model = make_hyperformer(backbone, [spec], joint.adapter, joint.hypernetwork)
    state = {k: v for k, v in joint.hypernetwork_state.items() if k != TASK_EMBEDDING}
    model.hypernetwork.load_state_dict(state | {TASK_EMBEDDING: init[None]})
    model.set_backbone_values(backbone_overrides(joint.layernorms))
    _train_only(model, options)
    return model


def target_tensors(model: HyperFormerModel, task: str) -> dict[str, torch.Tensor]:
    """Everything the target model computes with beyond the backbone as loaded (artifact layout)."""
    tensors = prefixed(model.hypernetwork.state_dict(), HYPERNETWORK) | prefixed(model.heads[task].state_dict(), HEAD)
    return tensors | layernorm_tensors(model.backbone_info)


def fit_hyperformer_transfer(
    backbone: Backbone,
    spec: TaskSpec,
    splits: DatasetSplits,
    joint_model_dir: Path,
    train: TrainConfig,
    output_dir: Path,
    *,
    init_from: str | dict[str, str] = MEAN,
    train_hypernetwork: bool = True,
    checkpoint_dir: Path | None = None,
    on_epoch=None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Fit a new task embedding and head and (with `train_hypernetwork`, the default) the hypernetwork
    and the backbone LayerNorms of the joint HyperFormer(++) in `joint_model_dir` on `spec`'s data.
    `init_from`: a task of the joint model or "mean", or a mapping from target to one (see
    `FewShotOptions`); the record holds the one `spec` started from.

    `result.metrics` has `validation_<metric>` and `test_<metric>` like every single-task fit;
    `result.extra["few_shot"]` says where the embedding started, what trained and from which joint model.
    """
    options = FewShotOptions(init_from, train_hypernetwork).for_target(spec.name)
    data = encode_splits(spec, splits, backbone, train.max_length)
    if data.train is None or data.validation is None:
        raise ConfigError(f"task {spec.name} needs training and validation examples for a few-shot fit")
    joint = read_joint_hyperformer(joint_model_dir, backbone)
    method = f"{joint.method}{FEW_SHOT_SUFFIX}"
    with job_model(train, lambda: build_hyperformer_transfer_model(backbone, spec, joint, options)) as model:
        run = fit_single_task(model, spec, data, train, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch,
                              on_step=on_step)
        record = {**options.to_dict(), "trained": options.trained(), "joint_model": joint.described,
                  "target_in_joint_model": spec.name in joint.tasks}
        config = artifact_config(method, backbone, model.adapter_config, train.to_dict(), run.metrics,
                                 **task_entries(spec, splits.digest()), hypernetwork=joint.hypernetwork.to_dict(),
                                 few_shot=record, best_epoch=run.fit.best_epoch, parameters=run.parameters)
        save_artifact(output_dir, target_tensors(model, spec.name), config)
    return run.result(output_dir, {"few_shot": record})


def load_hyperformer_transfer(folder: Path, backbone: Backbone, spec: TaskSpec) -> HyperFormerModel:
    """Rebuild a `fit_hyperformer_transfer` model (checks the backbone fingerprint). Its LayerNorms
    override `backbone`'s until `detach()`."""
    config, tensors = load_artifact(folder, backbone)
    if config.get("method") not in HYPERFORMER_TRANSFER_METHODS:
        raise ArtifactError(f"{folder} holds a {config.get('method')!r} artifact, not a HyperFormer few-shot fit "
                            f"({' or '.join(HYPERFORMER_TRANSFER_METHODS)})")
    model = make_hyperformer(backbone, [spec], AdapterConfig(**config["adapter"]), HyperNetConfig(**config["hypernetwork"]))
    try:
        model.hypernetwork.load_state_dict(under(tensors, HYPERNETWORK))
        model.heads[spec.name].load_state_dict(under(tensors, HEAD))
        model.set_backbone_values(backbone_overrides(tensors))
    except (RuntimeError, KeyError) as exc:
        model.detach()
        raise ArtifactError(f"{folder} does not hold the tensors of a {config['method']} fit of {spec.name} "
                            f"({str(exc).splitlines()[0]}); re-run its transfer fit") from None
    _train_only(model, FewShotOptions(config["few_shot"]["init_from"], config["few_shot"]["train_hypernetwork"]))
    return model
