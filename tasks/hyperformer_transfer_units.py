"""Prefect task of HyperFormer few-shot transfer (METHODS §2a): a new task embedding and head for a
target over a HyperFormer(++) trained jointly on the sources (`train_multitask_unit` over
`cfg.hyperformer_transfer_tasks()`, found in MLflow by its key like any source)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from peft_core.backbones import load_backbone
from peft_core.configs import TrainConfig
from peft_core.few_shot_options import FewShotOptions
from peft_core.hyperformer.few_shot import fit_hyperformer_transfer
from tasks.keys import unit_key
from tasks.prepared_data import load_splits, prepared_spec
from tasks.transfer_units import target_train_config
from tasks.units import run_training_unit

FEW_SHOT_RECORD = "few_shot.json"  # init_from, what trained and the joint model, beside the unit's metrics


def hyperformer_transfer_train_config(cfg: PipelineConfig, prepared: dict, method: str, seed: int) -> TrainConfig:
    """The target settings (`training.targets`), at `transfer.learning_rate`'s rate for `method` when one
    is given: the method has no published rate."""
    train = target_train_config(cfg, prepared, seed)
    rate = cfg.transfer.learning_rate_for(method)
    return train if rate == "published" else dataclasses.replace(train, learning_rate=rate)


def hyperformer_transfer_unit_key(cfg: PipelineConfig, prepared: dict, method: str, joint_key: str, seed: int) -> str:
    options = FewShotOptions.from_options(cfg.transfer.options_for(method)).for_target(prepared["task"])
    return unit_key("hyperformer_transfer", backbone=cfg.backbone, task=prepared["task"], data=prepared["digest"],
                    method=method, joint=joint_key, train=hyperformer_transfer_train_config(cfg, prepared, method, seed).to_dict(),
                    options=options.to_dict())


@task(name="fit_hyperformer_transfer", cache_policy=NO_CACHE,
      task_run_name="fit_hyperformer_transfer {prepared[task]}/{method} seed {seed}")
def fit_hyperformer_transfer_unit(cfg: PipelineConfig, prepared: dict, method: str, joint_unit: dict, seed: int,
                                  parent_run_id: str | None) -> dict:
    """Fit `method` on the target `prepared` over the joint model `joint_unit` (or reuse a finished fit)."""
    spec = prepared_spec(prepared)
    train_cfg = hyperformer_transfer_train_config(cfg, prepared, method, seed)
    options = FewShotOptions.from_options(cfg.transfer.options_for(method)).for_target(spec.name)

    def train(out: Path, checkpoint: Path, progress):
        result = fit_hyperformer_transfer(load_backbone(cfg.backbone), spec, load_splits(prepared["folder"]),
                                          Path(joint_unit["artifact_dir"]), train_cfg, out,
                                          init_from=options.init_from, train_hypernetwork=options.train_hypernetwork,
                                          checkpoint_dir=checkpoint, on_epoch=progress.on_epoch,
                                          on_step=progress.on_step)
        result.extra["json_artifacts"] = {FEW_SHOT_RECORD: result.extra["few_shot"]}
        return result

    key = hyperformer_transfer_unit_key(cfg, prepared, method, joint_unit["unit_key"], seed)
    params = {"method": method, "joint_model": joint_unit["task"], "joint_unit_key": joint_unit["unit_key"],
              "data_digest": prepared["digest"], "seed": seed, "training": train_cfg.to_dict(),
              "options": options.to_dict(), "trained": options.trained(), "sizes": prepared["sizes"]}
    return run_training_unit(cfg, parent_run_id, stage="transfer", task=spec.name, method=method, unit_key=key,
                             params=params, train=train, seed=seed, datasets=[prepared]).to_dict()
