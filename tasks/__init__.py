"""Prefect tasks: one unit of pipeline work each; the only package that talks to MLflow."""

from tasks.environment import use_project_defaults

use_project_defaults()  # before any module here imports Prefect, which reads its settings on import
