"""The skeleton every unit of work shares: look the unit up by key, else run it and track it.

A unit whose key has a FINISHED run in MLflow is not run again; the current pipeline run gets a
small child run that records the reuse (tag `artifact_run_id`), so its report is complete. A
finished run is reused only on the backbone it ran on (its `backbone_fingerprint` tag and its
files' record, against the config's backbone as loaded now: a name says nothing of the checkpoint
behind it) and only if its files load; otherwise the unit runs again, with a warning. A unit
that raises leaves its run FAILED, never reused. `run_training_unit` is the skeleton for units that
train: training writes into a work folder keyed by the unit, so a killed unit resumes from its last
epoch checkpoint; the artifact is logged only after training and evaluation completed.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException

from tasks.config import PipelineConfig
from peft_core.artifacts import check_artifact_files
from peft_core.backbones import load_backbone
from peft_core.errors import ArtifactError
from peft_core.jobs import TrainingResult
from tasks.seed_comparison import PREDICTIONS_FILE
from tasks.stage_table import stage_of_tag
from tasks.common import TrainingProgress, UnitResult, unit_logger
from tasks.models import example_rows, log_datasets, log_fitted_model, register_model, unit_targets
from tasks.tracking import (ARTIFACT_PATH, BACKBONE_FINGERPRINT_TAG, MAIN_METRIC_TAG, Tracking, UnitRun, download_unit_artifact, find_finished_unit,
                            record_reuse, unit_lock)

TrainFn = Callable[[Path, Path, TrainingProgress], TrainingResult]


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

    @property
    def label(self) -> str:
        """Its MLflow run's name and its name in logs: what differs between units first (the run
        table's name column is narrow), e.g. `rte/scalearn seed 1 (transfer)`."""
        return unit_label(self.stage, self.task, self.method, self.seed)


def unit_label(stage: str, task: str, method: str, seed: int | None = None) -> str:
    return f"{task}/{method}{f' seed {seed}' if seed is not None else ''} ({stage})"


@dataclass(frozen=True)
class UnitOutcome:
    run_id: str  # this pipeline run's child run of the unit
    result_run_id: str  # the run holding the unit's result: `run_id`, or the finished run reused
    metrics: dict[str, float]
    reused: bool


def run_unit(cfg: PipelineConfig, parent_run_id: str | None, unit: Unit,
             work: Callable[[Tracking, UnitRun], dict[str, float]]) -> UnitOutcome:
    """The unit's finished run if it has one (unless its stage is forced), else `work` in a new child
    run of `parent_run_id`; `work` logs what it computed and returns the unit's metrics."""
    # A second pipeline on the same store waits here, then finds the unit finished instead of
    # running it again (in the same work folder).
    with unit_lock(cfg.home_dir(), unit.key):
        tracking = Tracking.from_config(cfg)
        tags = {**unit.tags, BACKBONE_FINGERPRINT_TAG: backbone_fingerprint(cfg.backbone)}
        run_tags = dict(stage=unit.stage, task=unit.task, method=unit.method, unit_key=unit.key, extra_tags=tags)
        forced = stage_of_tag(unit.stage) in cfg.force_stages
        cached = None if forced else find_reusable_unit(cfg, tracking, unit.key, unit.label)
        if cached is not None:
            result_run_id = cached.data.tags.get("artifact_run_id", cached.info.run_id)
            run_id = record_reuse(tracking, parent_run_id, cached, unit.label, **run_tags)
            unit_logger().info("%s: reusing finished run %s (key %s)", unit.label, result_run_id, unit.key)
            return UnitOutcome(run_id, result_run_id, dict(cached.data.metrics), reused=True)
        with UnitRun(tracking, parent_run_id, unit.label, **run_tags) as run:
            metrics = work(tracking, run)
        unit_logger().info("%s finished: %s", unit.label, _short(metrics))
        return UnitOutcome(run.run_id, run.run_id, metrics, reused=False)


@functools.cache
def backbone_fingerprint(name: str) -> str:
    """The fingerprint of the backbone `name` resolves to now, loaded once per process."""
    return load_backbone(name).fingerprint


def find_reusable_unit(cfg: PipelineConfig, tracking: Tracking, key: str, label: str):
    """The finished run of unit `key` if it may be reused on the config's backbone, else None (a
    finished run that may not is named in a warning, with the reason)."""
    run, refusal = reusable_run(tracking, key, backbone_fingerprint(cfg.backbone), cfg.home_dir() / "artifact-cache")
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
    run_id = run.data.tags.get("artifact_run_id", run.info.run_id)
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


def registry_name(cfg: PipelineConfig, stage: str, task: str, method: str) -> str:
    """The registered model of a unit: EXPERIMENT.TARGET.METHOD for a transfer-stage fit (the target's
    no-transfer adapter included), EXPERIMENT.sources.TASK.METHOD for a source adapter and
    EXPERIMENT.multitask.TASKS.METHOD for a joint model (TASKS joined by '-')."""
    name = ".".join([cfg.experiment_name(), *unit_name_parts(stage, task, method)])
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def logged_model_name(stage: str, task: str, method: str, seed: int | None) -> str:
    """A unit's logged model (the run's Models column): `rte-scalearn-seed1`, `sources-rte-adapter-seed1`."""
    name = "-".join([*unit_name_parts(stage, task, method), *([f"seed{seed}"] if seed is not None else [])])
    return re.sub(r"[/:.%\"']", "-", name)  # characters MLflow refuses in a logged model's name


def run_training_unit(cfg: PipelineConfig, parent_run_id: str | None, *, stage: str, task: str, method: str,
                      unit_key: str, params: dict, train: TrainFn, seed: int | None = None,
                      datasets: Sequence[dict] = ()) -> UnitResult:
    """`run_unit` for a unit that trains: `train` writes its artifact (if any), which is logged with the
    run's params, history, metrics, predictions and datasets, and registered as a model. `datasets`:
    the prepared data (`prepare_task_data` results) the unit trains and is evaluated on."""
    unit = Unit(stage, task, method, unit_key, tags=main_metric_tag(task, datasets), seed=seed)
    work = cfg.home_dir() / "work" / unit_key

    def train_and_log(tracking: Tracking, run: UnitRun) -> dict[str, float]:
        run.log_params(params)
        result = train(work / ARTIFACT_PATH, work / "checkpoint", TrainingProgress(unit.label))
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
        log_datasets(tracking, run.run_id, datasets)
        if result.artifact_dir is not None:
            run.log_folder(result.artifact_dir, ARTIFACT_PATH)
            targets = unit_targets(task, method, result.artifact_dir)
            model_id = log_fitted_model(tracking, run.run_id, targets, example_rows(targets, datasets),
                                        name=logged_model_name(stage, task, method, seed))
            register_model(tracking, run.run_id, model_id, registry_name(cfg, stage, task, method), "current")
        shutil.rmtree(work, ignore_errors=True)  # logged to MLflow; a failed unit keeps it to resume
        return metrics

    outcome = run_unit(cfg, parent_run_id, unit, train_and_log)
    artifact = _unit_artifact(cfg, outcome.result_run_id)
    return UnitResult(stage, task, method, unit_key, outcome.run_id, str(artifact) if artifact else None,
                      outcome.metrics, reused=outcome.reused, seed=seed)


def main_metric_tag(task: str, datasets: Sequence[dict]) -> dict[str, str]:
    """The tag naming `task`'s main metric, from the prepared data of that task among `datasets`."""
    return {MAIN_METRIC_TAG: info["spec"]["metrics"][0] for info in datasets if info["task"] == task}


def _unit_artifact(cfg: PipelineConfig, run_id: str) -> Path | None:
    """The local copy of a unit run's artifact, or None when the run logged none."""
    tracking = Tracking.from_config(cfg)
    if not tracking.client().list_artifacts(run_id, ARTIFACT_PATH):
        return None
    return download_unit_artifact(tracking, run_id, ARTIFACT_PATH, cfg.home_dir() / "artifact-cache")


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("validation_", "test_")))
