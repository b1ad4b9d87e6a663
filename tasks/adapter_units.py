"""Prefect tasks for single adapters: train one (a source, or a target's no-transfer baseline)
and evaluate a saved one from its artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from peft_core.backbones import load_backbone
from peft_core.recipes import evaluate_adapter, train_adapter
from tasks.units import Unit, run_training_unit, run_unit
from tasks.keys import unit_key
from tasks.prepared_data import load_splits, prepared_spec
from tasks.tracking import Tracking, UnitRun

Role = Literal["source", "target"]


def adapter_unit_key(cfg: PipelineConfig, prepared: dict, seed: int, with_prompt: bool, role: Role) -> str:
    train = cfg.training.train_config(role, seed, prepared["sizes"]["train"])
    return unit_key("adapter", backbone=cfg.backbone, task=prepared["task"], data=prepared["digest"],
                    adapter=cfg.adapter.model_dump(), train=train.to_dict(), prompt=with_prompt)


def _adapter_run_name(parameters: dict) -> str:
    method = "prompt_adapter" if parameters.get("with_prompt") else "adapter"
    return f"train_adapter {parameters['prepared']['task']}/{method} ({parameters['role']}) seed {parameters['seed']}"


@task(name="train_adapter", cache_policy=NO_CACHE, task_run_name=_adapter_run_name)
def train_adapter_unit(cfg: PipelineConfig, prepared: dict, seed: int, parent_run_id: str | None, *,
                       with_prompt: bool = False, role: Role = "source") -> dict:
    """Train (or reuse) one adapter on a prepared task: a source's (`role` "source", sources stage) or a
    target's no-transfer baseline (`role` "target", transfer stage; also the own adapter that fits
    combine); `with_prompt` adds a task prompt (PEMT's sources). Returns a `UnitResult` as a dict."""
    spec = prepared_spec(prepared)
    train_cfg = cfg.training.train_config(role, seed, prepared["sizes"]["train"])
    method = "prompt_adapter" if with_prompt else "adapter"
    stage = "sources" if role == "source" else "transfer"

    def train(out: Path, checkpoint: Path, progress):
        backbone = load_backbone(cfg.backbone)
        return train_adapter(backbone, spec, load_splits(prepared["folder"]), cfg.adapter.to_core(), train_cfg,
                             out, with_prompt=with_prompt, checkpoint_dir=checkpoint,
                             on_epoch=progress.on_epoch, on_step=progress.on_step)

    params = {"backbone": cfg.backbone, "data_digest": prepared["digest"], "seed": seed, "with_prompt": with_prompt,
              "adapter": cfg.adapter.model_dump(), "training": train_cfg.to_dict(), "sizes": prepared["sizes"]}
    return run_training_unit(cfg, parent_run_id, stage=stage, task=spec.name, method=method,
                             unit_key=adapter_unit_key(cfg, prepared, seed, with_prompt, role),
                             params=params, train=train, seed=seed, datasets=[prepared]).to_dict()


def evaluate_unit_key(adapter_key: str, prepared: dict) -> str:
    return unit_key("evaluate", adapter=adapter_key, data=prepared["digest"])


@task(name="evaluate_adapter", cache_policy=NO_CACHE,
      task_run_name="evaluate_adapter {unit[task]}/{unit[method]} seed {unit[seed]}")
def evaluate_saved_adapter(cfg: PipelineConfig, unit: dict, prepared: dict, parent_run_id: str | None) -> dict:
    """Recompute an adapter's validation/test metrics from its artifact and log them as a run (or reuse
    a finished evaluation of it); returns `unit` with its metrics under "evaluation"."""
    evaluation = Unit("evaluate", unit["task"], unit["method"], evaluate_unit_key(unit["unit_key"], prepared),
                      tags={"evaluated_run_id": unit["run_id"]}, seed=unit.get("seed"))

    def evaluate(tracking: Tracking, run: UnitRun) -> dict[str, float]:
        metrics = evaluate_adapter(Path(unit["artifact_dir"]), load_backbone(cfg.backbone), prepared_spec(prepared),
                                   load_splits(prepared["folder"]))
        run.log_metrics(metrics)
        return metrics

    return {**unit, "evaluation": run_unit(cfg, parent_run_id, evaluation, evaluate).metrics}
