"""Prefect tasks for single adapters: train one (a source, or a target's no-transfer baseline)
and evaluate a saved one from its artifact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from peft_core.backbones import Backbone, load_backbone
from peft_core.adapter_jobs import evaluate_adapter, train_adapter
from peft_core.artifacts import artifact_output, read_artifact_config
from tasks.tracking import UnitRun
from tasks.unit_specs import AdapterUnit, Evaluation, UnitContext, UnitResult
from tasks.units import run_training_unit, run_unit, task_run_name


def _train(spec: AdapterUnit, backbone: Backbone, out: Path, hooks: dict):
    return train_adapter(backbone, spec.data.task_spec(), spec.data.splits(), spec.adapter, spec.train, out,
                         with_prompt=spec.with_prompt, **hooks)


@task(name="train_adapter", cache_policy=NO_CACHE, task_run_name=task_run_name("train_adapter"))
def train_adapter_unit(spec: AdapterUnit, context: UnitContext) -> UnitResult:
    """Train (or reuse) one adapter on a prepared task: a source's (sources stage) or a target's
    no-transfer baseline (transfer stage; also the own adapter that fits combine)."""
    return run_training_unit(context, spec, _train)


@task(name="evaluate_adapter", cache_policy=NO_CACHE, task_run_name=task_run_name("evaluate_adapter"))
def evaluate_saved_adapter(spec: Evaluation, context: UnitContext) -> UnitResult:
    """Recompute an adapter's validation/test metrics from its artifact and log them as a run (or reuse
    a finished evaluation of it); returns the adapter's result with them as its `evaluation`."""

    def evaluate(run: UnitRun) -> dict[str, float]:
        folder = Path(spec.adapter.artifact_dir)
        backbone = load_backbone(spec.backbone, output=artifact_output(read_artifact_config(folder)))
        metrics = evaluate_adapter(folder, backbone, spec.data.task_spec(), spec.data.splits())
        run.log_metrics(metrics)
        return metrics

    outcome = run_unit(context, spec, evaluate, tags={"evaluated_run_id": spec.adapter.run_id})
    return dataclasses.replace(spec.adapter, evaluation=outcome.metrics)
