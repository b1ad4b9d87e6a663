"""Prefect task of the multitask stage: train every task jointly (HyperFormer and joint baselines)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from peft_core.backbones import load_backbone
from peft_core.multitask import train_multitask
from tasks.common import UnitResult
from tasks.keys import unit_key
from tasks.stage_table import JOINT_MODEL_TAG
from tasks.prepared_data import load_splits, prepared_spec
from tasks.tracking import Tracking, UnitRun
from tasks.units import main_metric_tag, run_training_unit, unit_label


def _joint_adapter_settings(cfg: PipelineConfig, method: str):
    return cfg.adapter.model_copy(update={"placement": "houlsby"}) if method.startswith("hyperformer") else cfg.adapter


def multitask_unit_key(cfg: PipelineConfig, prepared: dict[str, dict], method: str, seed: int) -> str:
    return unit_key("multitask", backbone=cfg.backbone, method=method,
                    data={n: prepared[n]["digest"] for n in sorted(prepared)},
                    adapter=_joint_adapter_settings(cfg, method).model_dump(),
                    train=cfg.training.multitask.to_core(seed).to_dict(), temperature=cfg.transfer.temperature)


@task(name="train_multitask", cache_policy=NO_CACHE, task_run_name="train_multitask {method} seed {seed}")
def train_multitask_unit(cfg: PipelineConfig, prepared: dict[str, dict], method: str, seed: int,
                         parent_run_id: str | None, task_rows: bool = True) -> dict:
    """One joint model over all `prepared` tasks; with `task_rows` each task also gets a row run for
    the report (a joint model that is only a source of few-shot transfer fits gets none)."""
    names = sorted(prepared)
    train_cfg = cfg.training.multitask.to_core(seed)
    adapter = _joint_adapter_settings(cfg, method)

    def train(out: Path, checkpoint: Path, progress):
        return train_multitask(load_backbone(cfg.backbone), [prepared_spec(prepared[n]) for n in names],
                               {n: load_splits(prepared[n]["folder"]) for n in names}, method, adapter.to_core(),
                               train_cfg, out, temperature=cfg.transfer.temperature,
                               checkpoint_dir=checkpoint, on_epoch=progress.on_epoch, on_step=progress.on_step)

    key = multitask_unit_key(cfg, prepared, method, seed)
    params = {"method": method, "tasks": names, "seed": seed, "temperature": cfg.transfer.temperature,
              "training": train_cfg.to_dict(), "adapter": adapter.model_dump()}
    unit = run_training_unit(cfg, parent_run_id, stage=JOINT_MODEL_TAG, task="+".join(names), method=method,
                             unit_key=key, params=params, train=train, seed=seed,
                             datasets=list(prepared.values()))
    if task_rows:
        _log_task_rows(cfg, parent_run_id, unit, prepared)
    return unit.to_dict()


def _log_task_rows(cfg: PipelineConfig, parent_run_id: str | None, unit: UnitResult, prepared: dict[str, dict]) -> None:
    """Per-task child runs (`validation_*`, `test_*`) so joint models sit in the same table as the rest."""
    tracking = Tracking.from_config(cfg)
    metrics, key = unit.metrics, unit.unit_key
    share = {k: v for k, v in metrics.items() if k in ("wall_time_s", "peak_memory_mb", "trainable_params", "head_params")}
    tags = {"joint_unit_key": key, **({"reused": "true"} if unit.reused else {})}
    for name in sorted(prepared):
        prefix = f"{name}_"
        own = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
        with UnitRun(tracking, parent_run_id, unit_label("multitask", name, unit.method, unit.seed),
                     stage="multitask", task=name, method=unit.method, unit_key=f"{key}/{name}",
                     extra_tags=tags | main_metric_tag(name, [prepared[name]])) as run:
            run.log_metrics(own | share)
