"""Environment defaults for Prefect and MLflow under the project's home folder.

Prefect reads its settings when first imported, so these must be in the environment before any
`import prefect`: `tasks/__init__.py` and `flows/__init__.py` call `use_project_defaults()` first
thing (both packages' modules import Prefect). Values the user set are left as they are.
"""

import os
from contextlib import suppress
from pathlib import Path


def use_project_defaults() -> None:
    """Keep Prefect's database and logs under the project's home (not ~/.prefect) unless the user
    configured Prefect already; no telemetry or network calls from a local store; bounded MLflow
    HTTP retries. Idempotent."""
    home = Path(os.environ.get("ADAPTERFLOW_HOME", ".adapterflow")).resolve()
    if "PREFECT_HOME" not in os.environ:
        os.environ["PREFECT_HOME"] = str(home / "prefect")
        with suppress(OSError):  # an unwritable home is one error line from the command (PipelineConfig.ensure_home)
            Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" line per unit against a server
    # MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) keep a command silent for minutes
    # when a tracking server stops answering mid-run; these bound that to well under a minute.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
