"""The comparison report, read back from MLflow: one row per (stage, task, method) unit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from peft_core.errors import ConfigError
from peft_core.task_specs import get_task
from tasks.tracking import KIND_TAG, PARENT_TAG, Tracking

REPORTED_STAGES = ("sources", "transfer", "multitask")
COST_COLUMNS = ["trainable_params", "head_params", "wall_time_s", "peak_memory_mb"]


def latest_pipeline_run(tracking: Tracking):
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        raise ConfigError(f"no MLflow experiment '{tracking.experiment}' at {tracking.uri}; run `adapterflow run` first "
                          "or pass --experiment NAME")
    runs = tracking.client().search_runs([exp_id], f"tags.`{KIND_TAG}` = 'pipeline'",
                                         order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise ConfigError(f"experiment '{tracking.experiment}' has no pipeline runs yet; run `adapterflow run` first")
    return runs[0]


def comparison_table(tracking: Tracking, parent_run_id: str | None = None) -> pd.DataFrame:
    """Methods × tasks with each task's metrics, transfer parameters (head apart), time and memory."""
    parent_run_id = parent_run_id or latest_pipeline_run(tracking).info.run_id
    exp_id = tracking.experiment_id(create=False)
    runs = tracking.client().search_runs([exp_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000)
    rows = []
    for run in runs:
        tags = run.data.tags
        if tags.get("stage") not in REPORTED_STAGES or run.info.status != "FINISHED":
            continue
        metrics = {k: v for k, v in run.data.metrics.items() if k.startswith(("validation_", "test_")) or k in COST_COLUMNS}
        rows.append({"stage": tags["stage"], "task": tags["task"], "method": tags["method"], **metrics,
                     "reused": tags.get("reused") == "true", "run_id": run.info.run_id})
    if not rows:
        return pd.DataFrame(columns=["stage", "task", "method"])
    table = pd.DataFrame(rows)
    metric_cols = sorted(c for c in table.columns if c.startswith(("validation_", "test_")))
    ordered = ["stage", "task", "method", *metric_cols, *[c for c in COST_COLUMNS if c in table.columns], "reused", "run_id"]
    stage_order = {s: i for i, s in enumerate(REPORTED_STAGES)}
    table = table[ordered].sort_values(["task", "stage", "method"], key=lambda col: col.map(stage_order) if col.name == "stage" else col)
    return table.reset_index(drop=True)


def transfer_summary(table: pd.DataFrame) -> list[str]:
    """Per target: each transfer method's test score against the no-transfer adapter's."""
    transfer = table[table["stage"] == "transfer"] if not table.empty else table
    lines = []
    for task_name, rows in transfer.groupby("task"):
        metric = f"test_{get_task(task_name).main_metric}"
        baseline = rows[rows["method"] == "adapter"]
        if metric not in rows or baseline.empty:
            continue
        base = baseline[metric].iloc[0]
        others = rows[~rows["method"].isin(["adapter", "full_finetune"])].sort_values(metric, ascending=False)
        verdicts = ", ".join(f"{r.method} {r[metric]:.4f} ({r[metric] - base:+.4f})" for _, r in others.iterrows())
        lines.append(f"{task_name}: no-transfer adapter {metric} {base:.4f}; transfer: {verdicts}")
    return lines


def to_markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["run_id"], errors="ignore")
    return shown.to_markdown(index=False, floatfmt=".4g") if not shown.empty else "_no finished units_"


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(tracking: Tracking, parent_run_id: str) -> str:
    """Attach the comparison (markdown + CSV) to the parent run and publish Prefect artifacts."""
    table = comparison_table(tracking, parent_run_id)
    markdown = to_markdown(table)
    client = tracking.client()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "comparison.md").write_text(markdown + "\n")
        table.to_csv(Path(tmp) / "comparison.csv", index=False)
        client.log_artifacts(parent_run_id, tmp, "report")
    try:
        records = table.drop(columns=["run_id"], errors="ignore").round(4).to_dict(orient="records")
        create_table_artifact(records, key="comparison", description="adapterflow comparison of methods × tasks")
        create_markdown_artifact(f"# Comparison\n\nMLflow parent run `{parent_run_id}` at `{tracking.uri}`\n\n{markdown}",
                                 key="comparison-report")
    except MissingContextError:
        pass
    return markdown
