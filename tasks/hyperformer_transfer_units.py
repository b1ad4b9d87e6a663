"""Prefect task of HyperFormer few-shot transfer (METHODS §2a): a new task embedding and head for a
target over a HyperFormer(++) trained jointly on the sources (a `JointModel` unit without report
rows, found in MLflow by its key like any source)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from peft_core.backbones import Backbone
from peft_core.hyperformer.few_shot import fit_hyperformer_transfer
from tasks.unit_specs import FewShotFit, UnitContext, UnitResult
from tasks.units import run_training_unit, task_run_name, unit_files

FEW_SHOT_RECORD = "few_shot.json"  # init_from, what trained and the joint model, beside the unit's metrics


@task(name="fit_hyperformer_transfer", cache_policy=NO_CACHE, task_run_name=task_run_name("fit_hyperformer_transfer"))
def fit_hyperformer_transfer_unit(spec: FewShotFit, context: UnitContext) -> UnitResult:
    """Fit the spec's few-shot method on the target over its joint model (or reuse a finished fit)."""

    def fit(spec: FewShotFit, backbone: Backbone, out: Path, hooks: dict):
        result = fit_hyperformer_transfer(backbone, spec.data.task_spec(), spec.data.splits(),
                                          unit_files(context, spec.joint), spec.train, out,
                                          init_from=spec.options.init_from,
                                          train_hypernetwork=spec.options.train_hypernetwork, **hooks)
        result.extra["json_artifacts"] = {FEW_SHOT_RECORD: result.extra["few_shot"]}
        return result

    return run_training_unit(context, spec, fit)
