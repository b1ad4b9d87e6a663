"""Prefect flows composing tasks into stages and the pipeline; the `adapterflow` CLI."""

from tasks.environment import use_project_defaults

use_project_defaults()  # before any module here imports Prefect, which reads its settings on import
