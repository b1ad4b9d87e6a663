"""The skeleton every unit of work shares: look the unit up by key, else run it and track it.

A unit whose key has a FINISHED run in MLflow is not run again; the current pipeline run gets a
small child run that records the reuse (tag `artifact_run_id`), so its report is complete. A
finished run is reused only on the backbone it ran on (its `backbone_fingerprint` tag and its
files' record, against the config's backbone as loaded now: a name says nothing of the checkpoint
behind it) and only if its files load; otherwise the unit runs again, with a warning. A unit
that raises leaves its run FAILED, never reused. `run_training_unit` is the skeleton for units that
train: training writes into a work folder keyed by the unit, so a killed unit resumes from its last
epoch checkpoint; the artifact is logged only after training and evaluation completed. Units are
typed specs (`tasks.unit_specs`), whose key, params and settings the skeleton reads.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException

from peft_core.artifact_files import check_artifact_files
from peft_core.backbones import Backbone, load_backbone
from peft_core.errors import ArtifactError
from peft_core.jobs import TrainingResult
from tasks.seed_comparison import PREDICTIONS_FILE
from tasks.stage_table import stage_of_tag
from tasks.common import TrainingProgress, unit_logger
from tasks.model_targets import unit_targets
from tasks.models import example_rows, log_datasets, log_fitted_model, register_model
from tasks.tracking import (ARTIFACT_PATH, BACKBONE_FINGERPRINT_TAG, MAIN_METRIC_TAG, Tracking, UnitRun, download_unit_artifact, find_finished_unit,
                            record_reuse, result_run_id)
from tasks.locks import unit_lock
from tasks.unit_specs import PreparedData, UnitContext, UnitRef, UnitResult, UnitSpec

# A training unit's job: (its spec, the backbone, the folder to write its artifact to, the keyword
# arguments every peft_core training function takes: checkpoint_dir, on_epoch, on_step)
Job = Callable[[UnitSpec, Backbone, Path, dict], TrainingResult]


@dataclass(frozen=True)
class Unit:
    """A unit of work as its MLflow run is tagged. `stage`: the run's `stage` tag (`tasks.stage_table`:
    a stage's name, or a tag of its unit runs such as a joint model's, which `--force-stage` of that
    stage reruns); `tags`: further tags of its run and of a run recording its reuse."""

    stage: str
    task: str
    method: str
    key: str
    tags: dict[str, str] = field(default_factory=dict)
    seed: int | None = None

    @classmethod
    def of(cls, spec: UnitSpec, tags: dict[str, str] | None = None) -> "Unit":
        return cls(spec.stage, spec.task, spec.method, spec.key, tags=dict(tags or {}), seed=spec.seed)

    @property
    def label(self) -> str:
        """Its MLflow run's name and its name in logs: what differs between units first (the run
        table's name column is narrow), e.g. `rte/scalearn seed 1 (transfer)`."""
        return unit_label(self.stage, self.task, self.method, self.seed)


def task_run_name(job: str) -> Callable[..., str]:
    """The name of a Prefect task run of a unit, from the spec it is given: `fit_transfer rte/scalearn
    seed 1 (transfer)`, so the Prefect UI's task runs say what they train."""
    def name(parameters: dict) -> str:
        return f"{job} {Unit.of(parameters['spec']).label}"
    return name


def unit_label(stage: str, task: str, method: str, seed: int | None = None) -> str:
    return f"{task}/{method}{f' seed {seed}' if seed is not None else ''} ({stage})"


@dataclass(frozen=True)
class UnitOutcome:
    run_id: str  # this pipeline run's child run of the unit
    result_run_id: str  # the run holding the unit's result: `run_id`, or the finished run reused
    metrics: dict[str, float]
    reused: bool


def run_unit(context: UnitContext, spec: UnitSpec, work: Callable[[UnitRun], dict[str, float]],
             tags: dict[str, str] | None = None) -> UnitOutcome:
    """The unit's finished run if it has one (unless its stage is forced), else `work` in a new child
    run of the context's pipeline run; `work` logs what it computed and returns the unit's metrics."""
    unit = Unit.of(spec, tags)
    # A second pipeline on the same store waits here, then finds the unit finished instead of
    # running it again (in the same work folder).
    with unit_lock(context.home, unit.key):
        tracking = context.tracking
        run_tags = dict(stage=unit.stage, task=unit.task, method=unit.method, unit_key=unit.key,
                        extra_tags={**unit.tags, BACKBONE_FINGERPRINT_TAG: backbone_fingerprint(spec.backbone)})
        forced = stage_of_tag(unit.stage) in context.force_stages
        cached = None if forced else find_reusable_unit(context, spec.backbone, unit.key, unit.label)
        if cached is not None:
            run_id = record_reuse(tracking, context.parent_run_id, cached, unit.label, **run_tags)
            unit_logger().info("%s: reusing finished run %s (key %s)", unit.label, result_run_id(cached), unit.key)
            return UnitOutcome(run_id, result_run_id(cached), dict(cached.data.metrics), reused=True)
        with UnitRun(tracking, context.parent_run_id, unit.label, **run_tags) as run:
            run.log_params(spec.params())
            metrics = work(run)
        unit_logger().info("%s finished: %s", unit.label, _short(metrics))
        return UnitOutcome(run.run_id, run.run_id, metrics, reused=False)


@functools.cache
def backbone_fingerprint(name: str) -> str:
    """The fingerprint of the backbone `name` resolves to now, loaded once per process."""
    return load_backbone(name).fingerprint


def find_reusable_unit(context: UnitContext, backbone: str, key: str, label: str):
    """The finished run of unit `key` if it may be reused on `backbone`, else None (a finished run
    that may not is named in a warning, with the reason)."""
    run, refusal = reusable_run(context.tracking, key, backbone_fingerprint(backbone), context.home / "artifact-cache")
    if run is None or refusal is None:
        return run
    unit_logger().warning("%s: not reusing finished run %s (%s); running it again", label, run.info.run_id, refusal)
    return None


def reusable_run(tracking: Tracking, key: str, fingerprint: str, cache_dir: Path) -> tuple[object | None, str | None]:
    """The finished run of unit `key` (None: there is none) and why it must not be reused on the
    backbone of `fingerprint` (None: it may)."""
    run = find_finished_unit(tracking, key)
    return run, None if run is None else reuse_refusal(tracking, run, fingerprint, cache_dir)


def reuse_refusal(tracking: Tracking, run, fingerprint: str, cache_dir: Path) -> str | None:
    """Why the finished unit `run` must not be reused on the backbone of `fingerprint`, or None. The
    fingerprints it records (its tag, its files' configs) must all be that one, and its files, if it
    kept any, must load; a run that records none (of an older store, without files) is reused."""
    run_id = result_run_id(run)
    recorded = {run.data.tags[BACKBONE_FINGERPRINT_TAG]} if BACKBONE_FINGERPRINT_TAG in run.data.tags else set()
    if tracking.client().list_artifacts(run_id, ARTIFACT_PATH):
        try:
            configs = check_artifact_files(download_unit_artifact(tracking, run_id, ARTIFACT_PATH, cache_dir))
        except (ArtifactError, OSError, MlflowException) as exc:
            shutil.rmtree(cache_dir / run_id, ignore_errors=True)  # downloaded afresh by whoever needs it next
            return f"its files do not load: {exc}"
        recorded |= {str((config.get("backbone") or {}).get("fingerprint")) for config in configs.values()}
    others = sorted(recorded - {fingerprint})
    if others:
        return f"it ran on a backbone of fingerprint {', '.join(others)}, the config's backbone has {fingerprint}"
    return None


def unit_name_parts(stage: str, task: str, method: str) -> list[str]:
    """What names a unit's models: its task and method, after its stage for every stage but transfer,
    whose fits are what a target is given (`sources`, a source adapter; `multitask`, a joint model)."""
    stage = stage_of_tag(stage)
    return [task, method] if stage == "transfer" else [stage, task, method]


def registry_name(experiment: str, stage: str, task: str, method: str) -> str:
    """The registered model of a unit: EXPERIMENT.TARGET.METHOD for a transfer-stage fit (the target's
    no-transfer adapter included), EXPERIMENT.sources.TASK.METHOD for a source adapter and
    EXPERIMENT.multitask.TASKS.METHOD for a joint model (TASKS joined by '-')."""
    name = ".".join([experiment, *unit_name_parts(stage, task, method)])
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def logged_model_name(stage: str, task: str, method: str, seed: int | None) -> str:
    """A unit's logged model (the run's Models column): `rte-scalearn-seed1`, `sources-rte-adapter-seed1`."""
    name = "-".join([*unit_name_parts(stage, task, method), *([f"seed{seed}"] if seed is not None else [])])
    return re.sub(r"[/:.%\"']", "-", name)  # characters MLflow refuses in a logged model's name


def run_training_unit(context: UnitContext, spec: UnitSpec, job: Job) -> UnitResult:
    """`run_unit` for a unit that trains: `job` writes its artifact (if any), which is logged with the
    run's params, history, metrics, predictions and datasets, and registered as a model if it predicts."""
    work = context.home / "work" / spec.key
    tracking = context.tracking

    def train_and_log(run: UnitRun) -> dict[str, float]:
        progress = TrainingProgress(Unit.of(spec).label)
        hooks = dict(checkpoint_dir=work / "checkpoint", on_epoch=progress.on_epoch, on_step=progress.on_step)
        result = job(spec, load_backbone(spec.backbone, output=spec.task_output), work / ARTIFACT_PATH, hooks)
        run.log_history(result.history)
        metrics = result.metrics | {
            "wall_time_s": result.wall_time_s, "peak_memory_mb": result.peak_memory_mb,
            "trainable_params": result.trainable_params, "head_params": result.head_params,
            "best_epoch": result.best_epoch,
        }
        run.log_metrics(metrics)
        for name, data in result.extra.get("json_artifacts", {}).items():
            run.log_dict(data, name)
        if result.predictions:
            run.log_dict(result.predictions, PREDICTIONS_FILE)
        log_datasets(tracking, run.run_id, spec.datasets)
        if result.artifact_dir is not None:
            run.log_folder(result.artifact_dir, ARTIFACT_PATH)
        if result.artifact_dir is not None and spec.predicts:
            targets = unit_targets(spec.task, spec.method, result.artifact_dir)
            model_id = log_fitted_model(tracking, run.run_id, targets, example_rows(targets, spec.datasets),
                                        name=logged_model_name(spec.stage, spec.task, spec.method, spec.seed))
            register_model(tracking, run.run_id, model_id,
                           registry_name(tracking.experiment, spec.stage, spec.task, spec.method), "current")
        shutil.rmtree(work, ignore_errors=True)  # logged to MLflow; a failed unit keeps it to resume
        return metrics

    outcome = run_unit(context, spec, train_and_log, main_metric_tag(spec.task, spec.datasets))
    artifact = _unit_artifact(context, outcome.result_run_id)
    return UnitResult(spec.stage, spec.task, spec.method, spec.key, outcome.run_id, str(artifact) if artifact else None,
                      outcome.metrics, reused=outcome.reused, seed=spec.seed)


def main_metric_tag(task: str, datasets: tuple[PreparedData, ...]) -> dict[str, str]:
    """The tag naming `task`'s main metric, from the prepared data of that task among `datasets`."""
    return {MAIN_METRIC_TAG: data.main_metric for data in datasets if data.task == task}


def unit_files(context: UnitContext, ref: UnitRef) -> Path:
    """The local copy of the files of the finished unit `ref` (a unit another builds on)."""
    run = find_finished_unit(context.tracking, ref.key)
    artifact = None if run is None else _unit_artifact(context, result_run_id(run))
    if artifact is None:
        raise ArtifactError(f"unit {ref.task}/{ref.method} (key {ref.key}) has no finished run with files in "
                            f"{context.tracking.uri}; run the stage that trains it first")
    return artifact


def _unit_artifact(context: UnitContext, run_id: str) -> Path | None:
    """The local copy of a unit run's artifact, or None when the run logged none."""
    tracking = context.tracking
    if not tracking.client().list_artifacts(run_id, ARTIFACT_PATH):
        return None
    return download_unit_artifact(tracking, run_id, ARTIFACT_PATH, context.home / "artifact-cache")


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("validation_", "test_")))
