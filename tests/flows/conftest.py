"""A finished tiny pipeline run that the predict, export and import tests read (and never change)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_config
from flows.stages import run_stage
from tasks.tracking import PARENT_TAG, Tracking
from tests.conftest import write_tiny_config

FITTED_SETTINGS = {"sources": ["demo_sentiment", "demo_similarity"],
                   "methods": ["adapter", "scalearn", "hyperformer_plus_plus"]}


@pytest.fixture(scope="session")
def fitted(prefect_api, tmp_path_factory, tiny_backbone_dir):
    """(config path, config) of a finished tiny pipeline run: sources, a target adapter, ScaLearn and a
    joint HyperFormer++ over the three tasks."""
    path, _ = write_tiny_config(tmp_path_factory.mktemp("fitted"), tiny_backbone_dir, **FITTED_SETTINGS)
    cfg = load_config(path)
    run_stage(cfg, None)
    return path, cfg


def invoke(*args) -> tuple[int, str, str]:
    """`adapterflow ARGS` in this process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def latest_units(tracking: Tracking) -> list:
    """The unit runs of the experiment's latest pipeline run."""
    client = tracking.client()
    parent = client.search_runs([tracking.experiment_id()], "tags.`adapterflow.kind` = 'pipeline'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    return client.search_runs([tracking.experiment_id()], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
