"""Prefect task of the multitask stage: train every task jointly (HyperFormer and joint baselines)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from peft_core.backbones import Backbone
from peft_core.multitask import train_multitask
from tasks.tracking import UnitRun
from tasks.unit_specs import JointModel, UnitContext, UnitResult
from tasks.units import main_metric_tag, run_training_unit, task_run_name, unit_label

SHARED_METRICS = ("wall_time_s", "peak_memory_mb", "trainable_params", "head_params")  # one joint model's, every row's


def _train(spec: JointModel, backbone: Backbone, out: Path, hooks: dict):
    return train_multitask(backbone, [d.task_spec() for d in spec.data], {d.task: d.splits() for d in spec.data},
                           spec.method, spec.adapter, spec.train, out, temperature=spec.temperature, **hooks)


@task(name="train_multitask", cache_policy=NO_CACHE, task_run_name=task_run_name("train_multitask"))
def train_multitask_unit(spec: JointModel, context: UnitContext) -> UnitResult:
    """One joint model over all of the spec's tasks; with `task_rows` each task also gets a row run
    for the report."""
    unit = run_training_unit(context, spec, _train)
    if spec.task_rows:
        _log_task_rows(context, spec, unit)
    return unit


def _log_task_rows(context: UnitContext, spec: JointModel, unit: UnitResult) -> None:
    """Per-task child runs (`validation_*`, `test_*`) so joint models sit in the same table as the rest."""
    share = {k: v for k, v in unit.metrics.items() if k in SHARED_METRICS}
    tags = {"joint_unit_key": unit.unit_key, **({"reused": "true"} if unit.reused else {})}
    for data in spec.data:
        prefix = f"{data.task}_"
        own = {k[len(prefix):]: v for k, v in unit.metrics.items() if k.startswith(prefix)}
        with UnitRun(context.tracking, context.parent_run_id, unit_label("multitask", data.task, unit.method, unit.seed),
                     stage="multitask", task=data.task, method=unit.method, unit_key=f"{unit.unit_key}/{data.task}",
                     extra_tags=tags | main_metric_tag(data.task, (data,))) as run:
            run.log_metrics(own | share)
