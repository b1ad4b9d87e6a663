"""The skeleton every training unit shares: look the unit up by key, else train, track, register.

A unit whose key has a FINISHED run in MLflow is not trained again; the current pipeline run
gets a small child run that records the reuse (tag `artifact_run_id`), so its report is complete.
Training writes into a work folder keyed by the unit, so a killed unit resumes from its last
epoch checkpoint; the artifact is logged only after training and evaluation completed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from tasks.config import PipelineConfig
from peft_core.jobs import TrainingResult
from tasks.stage_table import stage_of_tag
from tasks.common import TrainingProgress, UnitResult, unit_logger
from tasks.models import example_rows, log_datasets, log_fitted_model, register_model, unit_targets
from tasks.tracking import Tracking, UnitRun, download_unit_artifact, find_finished_unit, record_reuse, unit_lock

ARTIFACT_PATH = "adapter"
PREDICTIONS_FILE = "predictions.json"  # test predictions and labels: what paired comparisons resample
TrainFn = Callable[[Path, Path, TrainingProgress], TrainingResult]


def registry_name(cfg: PipelineConfig, task: str, method: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{cfg.experiment_name()}.{task}.{method}")


def run_training_unit(cfg: PipelineConfig, parent_run_id: str | None, *, stage: str, task: str, method: str,
                      unit_key: str, params: dict, train: TrainFn, seed: int | None = None,
                      datasets: Sequence[dict] = ()) -> UnitResult:
    """`stage`: the run's `stage` tag (`tasks.stage_table`: a stage's name, or a tag of its unit runs such
    as a joint model's, which `--force-stage` of that stage retrains). `datasets`: the prepared data
    (`prepare_task_data` results) the unit trains and is evaluated on."""
    # A second pipeline on the same store waits here, then finds the unit finished instead of
    # training it again in the same work folder.
    with unit_lock(cfg.home_dir(), unit_key):
        tracking = Tracking.from_config(cfg)
        label = f"{stage}/{task}/{method}"
        cached = None if stage_of_tag(stage) in cfg.force_stages else find_finished_unit(tracking, unit_key)
        if cached is not None:
            return _record_reuse(cfg, tracking, parent_run_id, cached, stage, task, method, unit_key, label, seed)

        work = cfg.home_dir() / "work" / unit_key
        progress = TrainingProgress(label)
        with UnitRun(tracking, parent_run_id, label, stage=stage, task=task, method=method, unit_key=unit_key) as run:
            run.log_params(params)
            result = train(work / ARTIFACT_PATH, work / "checkpoint", progress)
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
                model_id = log_fitted_model(tracking, run.run_id, targets, example_rows(targets, datasets))
                register_model(tracking, run.run_id, model_id, registry_name(cfg, task, method), "current")
        shutil.rmtree(work / "checkpoint", ignore_errors=True)
        unit_logger().info("%s finished: %s", label, _short(result.metrics))
        artifact = download_unit_artifact(tracking, run.run_id, ARTIFACT_PATH, cfg.home_dir() / "artifact-cache") \
            if result.artifact_dir is not None else None
        shutil.rmtree(work, ignore_errors=True)
        return UnitResult(stage, task, method, unit_key, run.run_id, str(artifact) if artifact else None, metrics, seed=seed)


def _record_reuse(cfg, tracking, parent_run_id, cached, stage, task, method, unit_key, label, seed) -> UnitResult:
    source_run_id = cached.data.tags.get("artifact_run_id", cached.info.run_id)
    metrics = dict(cached.data.metrics)
    run_id = record_reuse(tracking, parent_run_id, cached, label, stage=stage, task=task, method=method, unit_key=unit_key)
    has_artifact = bool(tracking.client().list_artifacts(source_run_id, ARTIFACT_PATH))  # full FT keeps none
    artifact = download_unit_artifact(tracking, source_run_id, ARTIFACT_PATH, cfg.home_dir() / "artifact-cache") \
        if has_artifact else None
    unit_logger().info("%s: reusing finished run %s (key %s)", label, source_run_id, unit_key)
    return UnitResult(stage, task, method, unit_key, run_id, str(artifact) if artifact else None, metrics, reused=True, seed=seed)


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("validation_", "test_")))
