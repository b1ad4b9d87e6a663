"""The comparison report, read back from MLflow: one row per (stage, task, method) unit."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from peft_core.artifact_layout import IMPORTED_LORA
from peft_core.errors import ConfigError
from tasks.seed_comparison import describe_gain, main_metric, summarise_fits
from tasks.stage_table import REPORTED_STAGES
from tasks.tracking import FINISHED, KIND_TAG, MAIN_METRIC_TAG, PARENT_TAG, Tracking, result_run_id

COST_COLUMNS = ["trainable_params", "head_params", "wall_time_s", "peak_memory_mb"]
HIDDEN_COLUMNS = ("main_metric", "run_id", "artifact_run_id")  # for the summaries and links, not the table
WHOLE_NUMBERS = ("seed", "trainable_params", "head_params")  # MLflow keeps every metric as a float
MISSING = "-"
IMPORTED = "imported"  # the metric cells of a source imported from a PEFT folder: it has no head to score


@dataclass(frozen=True)
class ChosenRun:
    """The pipeline run a report shows, and what to tell the user about that choice."""

    run: Run
    experiment: str
    note: str | None = None

    def describe(self) -> str:
        return f"{_describe(self.run)} of experiment '{self.experiment}'"

    def title(self) -> str:
        """The line a report starts with: the experiment, the run's name and its id."""
        return f"adapterflow — run {self.describe()}"


def _describe(run: Run) -> str:
    return f"'{run.info.run_name}' ({run.info.run_id})"


def _state(run: Run) -> str:
    return "is still running" if run.info.status == "RUNNING" else "failed"


def choose_pipeline_run(tracking: Tracking, run_id: str | None = None, all_experiments: bool = False) -> ChosenRun:
    """`run_id`'s pipeline run, else the latest finished one of the experiment (or of every experiment),
    with a note when a later run failed or is still running, so its finished units are not missed."""
    if run_id:
        return _named_run(tracking, run_id)
    exp_ids = _experiment_ids(tracking, all_experiments)
    latest = _pipeline_runs(tracking, exp_ids)
    if not latest:
        where = f"experiment '{tracking.experiment}'" if not all_experiments else tracking.uri
        raise ConfigError(f"{where} has no pipeline runs yet; run `adapterflow run CONFIG` first, or pass "
                          "`--config CONFIG` with the config you ran (its home and tracking settings say where)")
    if latest[0].info.status == FINISHED:
        return _chosen(tracking, latest[0])
    finished = _pipeline_runs(tracking, exp_ids, f" and attributes.status = '{FINISHED}'")
    if not finished:
        return _chosen(tracking, latest[0], f"the latest pipeline run {_describe(latest[0])} {_state(latest[0])} and "
                                            "none has finished; showing the units it finished")
    return _chosen(tracking, finished[0], f"the latest pipeline run {_describe(latest[0])} {_state(latest[0])}; "
                                          "showing the latest finished one; `adapterflow report --run "
                                          f"{latest[0].info.run_id}` shows the units that run finished")


def _chosen(tracking: Tracking, run: Run, note: str | None = None) -> ChosenRun:
    return ChosenRun(run, tracking.client().get_experiment(run.info.experiment_id).name, note)


def latest_pipeline_run(tracking: Tracking) -> Run:
    """The pipeline run `adapterflow report` shows by default (see `choose_pipeline_run`)."""
    return choose_pipeline_run(tracking).run


def _experiment_ids(tracking: Tracking, all_experiments: bool) -> list[str]:
    if all_experiments:
        return [e.experiment_id for e in tracking.client().search_experiments()]
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        raise ConfigError(f"no MLflow experiment '{tracking.experiment}' at {tracking.uri}; run `adapterflow run "
                          "CONFIG` first, or pass `--config CONFIG` with the config you ran (or --experiment NAME)")
    return [exp_id]


def _pipeline_runs(tracking: Tracking, exp_ids: list[str], also: str = "") -> list[Run]:
    if not exp_ids:
        return []
    return tracking.client().search_runs(exp_ids, f"tags.`{KIND_TAG}` = 'pipeline'{also}",
                                         order_by=["attributes.start_time DESC"], max_results=1)


def _named_run(tracking: Tracking, run_id: str) -> ChosenRun:
    try:
        run = tracking.client().get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--run {run_id}: no such run at {tracking.uri}; pass a pipeline run id "
                          "(omit --run for the latest finished one)") from None
    tags = run.data.tags
    if tags.get(KIND_TAG) != "pipeline":
        parent = f"; its pipeline run is {tags[PARENT_TAG]}" if PARENT_TAG in tags else ""
        raise ConfigError(f"--run {run_id} is not a pipeline run ({tags.get('stage', '?')}/{tags.get('task', '?')}/"
                          f"{tags.get('method', '?')}){parent}; pass a pipeline run id")
    if run.info.status == FINISHED:
        return _chosen(tracking, run)
    return _chosen(tracking, run, f"pipeline run {_describe(run)} {_state(run)}; showing the units it finished")


def comparison_table(tracking: Tracking, parent_run_id: str | None = None) -> pd.DataFrame:
    """Methods × tasks with each task's metrics, transfer parameters (head apart), time and memory."""
    parent_run_id = parent_run_id or latest_pipeline_run(tracking).info.run_id
    client = tracking.client()
    exp_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000)
    rows = []
    for run in runs:
        tags = run.data.tags
        if tags.get("stage") not in REPORTED_STAGES or run.info.status != "FINISHED":
            continue
        metrics = {k: v for k, v in run.data.metrics.items() if k.startswith(("validation_", "test_")) or k in COST_COLUMNS}
        artifact_run_id = result_run_id(run)
        params = run.data.params if artifact_run_id == run.info.run_id else client.get_run(artifact_run_id).data.params
        rows.append({"stage": tags["stage"], "task": tags["task"], "method": tags["method"],
                     "seed": int(params["seed"]) if "seed" in params else None, **metrics,
                     "reused": tags.get("reused") == "true", "main_metric": tags.get(MAIN_METRIC_TAG),
                     "run_id": run.info.run_id,
                     "artifact_run_id": artifact_run_id})
    if not rows:
        return pd.DataFrame(columns=["stage", "task", "method"])
    table = pd.DataFrame(rows)
    metric_cols = sorted(c for c in table.columns if c.startswith(("validation_", "test_")))
    ordered = ["stage", "task", "method", "seed", *metric_cols, *[c for c in COST_COLUMNS if c in table.columns], "reused",
               *HIDDEN_COLUMNS]
    stage_order = {s: i for i, s in enumerate(REPORTED_STAGES)}
    table = table[ordered].sort_values(["task", "stage", "method"], key=lambda col: col.map(stage_order) if col.name == "stage" else col)
    return table.reset_index(drop=True)


def transfer_summary(table: pd.DataFrame, tracking: Tracking | None = None) -> list[str]:
    """Per target: each transfer method's test score against the no-transfer adapter's; with
    several seeds, mean ± std and the paired gain with its 95 % interval (needs `tracking`)."""
    transfer = table[table["stage"] == "transfer"] if not table.empty else table
    if tracking is not None and not transfer.empty and transfer.groupby(["task", "method"]).size().max() > 1:
        return _seed_summary(tracking, transfer)
    lines = []
    for task_name, rows in transfer.groupby("task"):
        metric = f"test_{main_metric(rows, task_name)}"
        baseline = rows[rows["method"] == "adapter"]
        if metric not in rows or baseline.empty:
            continue
        base = baseline[metric].iloc[0]
        others = rows[~rows["method"].isin(["adapter", "full_finetune"])].sort_values(metric, ascending=False)
        verdicts = ", ".join(f"{r.method} {r[metric]:.4f} ({r[metric] - base:+.4f})" for _, r in others.iterrows())
        lines.append(f"{task_name}: no-transfer adapter {metric} {base:.4f}; transfer: {verdicts}")
    return lines


def _seed_summary(tracking: Tracking, transfer: pd.DataFrame) -> list[str]:
    lines = []
    rows = pd.DataFrame(summarise_fits(tracking, transfer))
    for task_name, group in rows.groupby("task"):
        metric = group["metric"].iloc[0]
        cells = [f"{r.method} {r['mean']:.4f} ± {r['std']:.4f} (gain {describe_gain(r)})"
                 for _, r in group.sort_values("mean", ascending=False).iterrows()]
        lines.append(f"{task_name}, test {metric}, mean ± std over {int(group['seeds'].max())} seeds, gain over the "
                     f"adapter ×100 [95 % interval over seeds and test examples; ↑/↓ excludes 0]: " + "; ".join(cells))
    return lines


def format_cell(column: str, value) -> str:
    """One report value as a person reads it: metrics to 4 decimals, counts with thousands separators,
    seconds to 0.1, whether the unit was reused as yes/no, and `MISSING` for no value."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return MISSING
    if column == "reused":
        return "yes" if value else "no"
    if column == "seed":
        return str(int(value))
    if column in WHOLE_NUMBERS or column == "peak_memory_mb":
        return f"{value:,.0f}"
    if column == "wall_time_s":
        return f"{value:,.1f}"
    if column.startswith(("validation_", "test_")):
        return f"{value:.4f}"
    return str(value)


def no_metrics(method: str) -> str:
    """What a metric cell shows for a unit of `method` without that metric."""
    return IMPORTED if method == IMPORTED_LORA else MISSING


def display_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The report's shown columns, every cell formatted by `format_cell` (an imported source's metrics as such)."""
    shown = table.drop(columns=list(HIDDEN_COLUMNS), errors="ignore")
    cells = pd.DataFrame({c: [format_cell(c, v) for v in shown[c]] for c in shown.columns}, columns=shown.columns)
    for column in [c for c in cells.columns if c.startswith(("validation_", "test_"))]:
        cells[column] = [no_metrics(m) if cell == MISSING else cell for m, cell in zip(shown["method"], cells[column])]
    return cells


def to_markdown(table: pd.DataFrame) -> str:
    cells = display_cells(table)
    if cells.empty:
        return "_no finished units_"
    text = {"stage", "task", "method", "reused"}
    return cells.to_markdown(index=False, disable_numparse=True,
                             colalign=["left" if c in text else "right" for c in cells.columns])


def to_csv(table: pd.DataFrame, out) -> None:
    """Every column (run ids included) for other programs: whole numbers as integers, a missing value empty."""
    table = table.copy()
    for column in WHOLE_NUMBERS:
        if column in table:
            table[column] = pd.to_numeric(table[column]).round().astype("Int64")
    table.to_csv(out, index=False)
