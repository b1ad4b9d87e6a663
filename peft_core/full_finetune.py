"""The full fine-tuning baseline: every backbone weight trains, no adapters.

The backbone is updated in place, so pass a backbone loaded for this job alone. The artifact
holds the whole encoder and the head.
"""

from __future__ import annotations

from pathlib import Path

from .artifact_layout import ENCODER, FULL_FINETUNE, HEAD, prefixed, under
from .artifacts import artifact_config, load_artifact, save_artifact, task_entries
from .backbones import Backbone
from .configs import TrainConfig
from .data.types import DatasetSplits
from .jobs import TrainingResult, encode_splits, fit_single_task, job_model
from .model import AdapterModel
from .task_specs import TaskSpec
from .training import StepCallback


def build_full_finetune_model(backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    model = AdapterModel(backbone, "pfeiffer")  # sites stay empty: exact pass-throughs
    model.add_head(spec)
    model.encoder.requires_grad_(True)
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
    if output_dir is not None:  # saved once detached: the encoder's tensors under its own names, not the sites'
        tensors = prefixed(model.encoder.state_dict(), ENCODER) | prefixed(model.heads[spec.name].state_dict(), HEAD)
        config = artifact_config(FULL_FINETUNE, backbone, None, train.to_dict(), run.metrics,
                                 **task_entries(spec, splits.digest()), best_epoch=run.fit.best_epoch)
        save_artifact(output_dir, tensors, config)
    return run.result(output_dir)


def load_full_finetune_model(folder: Path, backbone: Backbone, spec: TaskSpec) -> AdapterModel:
    """Rebuild a `train_full_finetune` model: its encoder weights are copied into `backbone` in place."""
    _, tensors = load_artifact(folder, backbone)
    backbone.model.load_state_dict(under(tensors, ENCODER))  # before the sites wrap the modules and change their names
    model = AdapterModel(backbone, "pfeiffer")
    model.add_head(spec).load_state_dict(under(tensors, HEAD))
    return model
