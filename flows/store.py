"""The MLflow store and experiment a config's runs go to."""

from __future__ import annotations

from flows.config import PipelineConfig
from tasks.tracking import Tracking


def tracking_for(config: PipelineConfig) -> Tracking:
    """`tracking.uri` (else $MLFLOW_TRACKING_URI, else a SQLite store in the config's home) and the
    config's experiment."""
    return Tracking.at(config.tracking.uri, config.experiment_name(), config.ensure_home)
