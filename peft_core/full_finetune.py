"""The full fine-tuning baseline: every backbone weight trains, no adapters.

The model overrides every tensor of the backbone (`AdapterModel.override_backbone`): it trains them
in place and puts the values as loaded back when it detaches. The artifact holds the whole encoder
and the head.
"""

from __future__ import annotations

from pathlib import Path

from .artifact_layout import ENCODER, FULL_FINETUNE, HEAD, prefixed, under
from .artifacts import artifact_config, load_artifact, save_artifact, task_entries
from .backbones import Backbone
from .configs import TrainConfig
from .data.types import DatasetSplits
from .errors import ArtifactError
from .jobs import TrainingResult, encode_splits, fit_single_task, job_model
from .model import AdapterModel
from .task_specs import TaskSpec
from .training import StepCallback


def build_full_finetune_model(backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    model = AdapterModel(backbone, "pfeiffer")  # sites stay empty: exact pass-throughs
    model.add_head(spec)
    model.override_backbone(backbone.state.names, trainable=True)
    return model


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
    """Fine-tune `backbone` and a new head on `spec`; the artifact is written when `output_dir` is given."""
    with job_model(train, lambda: build_full_finetune_model(backbone, spec)) as model:
        data = encode_splits(spec, splits, backbone, train.max_length)
        run = fit_single_task(model, spec, data, train, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch,
                              on_step=on_step)
        if output_dir is not None:
            tensors = prefixed(model.backbone_values(), ENCODER) | prefixed(model.heads[spec.name].state_dict(), HEAD)
            config = artifact_config(FULL_FINETUNE, backbone, None, train.to_dict(), run.metrics,
                                     **task_entries(spec, splits.digest()), best_epoch=run.fit.best_epoch)
            save_artifact(output_dir, tensors, config)
    return run.result(output_dir)


def load_full_finetune_model(folder: Path, backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    """Rebuild a `train_full_finetune` model: its encoder weights override `backbone`'s until `detach()`."""
    _, tensors = load_artifact(folder, backbone)
    encoder = under(tensors, ENCODER)
    if missing := [name for name in backbone.state.names if name not in encoder]:
        raise ArtifactError(f"{folder} holds no value of backbone tensor {missing[0]!r} (and {len(missing) - 1} "
                            "more); re-run the full fine-tuning")
    model = AdapterModel(backbone, "pfeiffer")
    model.add_head(spec).load_state_dict(under(tensors, HEAD))
    model.set_backbone_values(encoder)
    return model
