"""Where a fitted unit's targets are: its MLflow model's, downloaded once, or its fitted folder's.

Torch-free, so `adapterflow predict` finds a unit while torch and transformers import (in a second
process); logging a unit's model is `tasks.models`'.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from peft_core.artifact_files import fitted_tasks, read_artifact_config
from peft_core.model_set_files import Target, model_set_targets
from tasks.tracking import Tracking

TARGETS_ARTIFACT = "targets"  # the model's artifact holding its targets (a saved model set)


def unit_targets(task: str, method: str, artifact_dir: Path) -> dict[str, Target]:
    """What a unit's model answers: `task/method`, or each task of a joint model by its name."""
    if "tasks" in read_artifact_config(artifact_dir):
        return {name: (Path(artifact_dir), name) for name in fitted_tasks(artifact_dir)}
    return {f"{task}/{method}": Path(artifact_dir)}


def run_model_id(tracking: Tracking, run_id: str) -> str | None:
    """The model a unit's run logged (its newest), or None for runs that logged none."""
    outputs = tracking.client().get_run(run_id).outputs
    models = outputs.model_outputs if outputs else []
    return models[-1].model_id if models else None


def download_model_targets(tracking: Tracking, model_id: str, cache_dir: Path) -> dict[str, Target]:
    """The targets of a logged model, downloaded once under `cache_dir` (renamed into place when complete)."""
    local = cache_dir / model_id
    if not local.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # The artifact location, not "models:/<id>": MLflow resolves that through the global tracking URI.
        location = tracking.client().get_logged_model(model_id).artifact_location
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            downloaded = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                             tracking_uri=tracking.uri)
            try:
                Path(downloaded).rename(local)
            except OSError:
                if not local.exists():  # else a parallel download finished first
                    raise
    return model_set_targets(local / "artifacts" / TARGETS_ARTIFACT)
