"""The CLI in this process, and the units a pipeline run logged."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from tasks.tracking import PARENT_TAG, Tracking


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
