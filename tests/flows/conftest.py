"""A finished tiny pipeline run that the predict, export and import tests read (and never change)."""

from __future__ import annotations

import pytest

from flows.config import load_config
from flows.stages import run_stage
from tests.helpers.configs import FITTED_SETTINGS, write_tiny_config


@pytest.fixture(scope="session")
def fitted(prefect_api, tmp_path_factory, tiny_backbone_dir):
    """(config path, config) of a finished tiny pipeline run: sources, a target adapter, ScaLearn and a
    joint HyperFormer++ over the three tasks."""
    path, _ = write_tiny_config(tmp_path_factory.mktemp("fitted"), tiny_backbone_dir, **FITTED_SETTINGS)
    cfg = load_config(path)
    run_stage(cfg, None)
    return path, cfg
