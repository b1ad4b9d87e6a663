"""The Prefect task that publishes a pipeline run's comparison: on its MLflow parent run (markdown +
CSV) and as Prefect artifacts. Kept apart from tasks/reporting.py so that `adapterflow report` and
`predict` import no Prefect."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from tasks.reporting import ChosenRun, comparison_table, display_cells, to_csv, to_markdown
from tasks.tracking import Tracking


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(tracking: Tracking, parent_run_id: str) -> str:
    """Attach the comparison (markdown + CSV) to the parent run and publish Prefect artifacts. The
    parent run also gets metrics `units_trained` and `units_reused`: in MLflow's runs table they tell a
    run that trained something from a re-run that found everything done."""
    table = comparison_table(tracking, parent_run_id)
    markdown = to_markdown(table)
    client = tracking.client()
    reused = int(table["reused"].sum()) if "reused" in table else 0
    for name, value in (("units_trained", len(table) - reused), ("units_reused", reused)):
        client.log_metric(parent_run_id, name, value)
    title = ChosenRun(client.get_run(parent_run_id), tracking.experiment).title()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "comparison.md").write_text(f"**{title}**\n\n{markdown}\n")
        to_csv(table, Path(tmp) / "comparison.csv")
        client.log_artifacts(parent_run_id, tmp, "report")
    try:
        records = display_cells(table).to_dict(orient="records")
        create_table_artifact(records, key="comparison", description="adapterflow comparison of methods × tasks")
        create_markdown_artifact(f"# Comparison\n\n{title}, MLflow `{tracking.uri}`\n\n{markdown}",
                                 key="comparison-report")
    except MissingContextError:
        pass
    return markdown
