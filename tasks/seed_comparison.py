"""Methods compared over seeds, from what MLflow holds: mean ± std of the main test metric, and the
paired gain over the no-transfer adapter with a 95 % bootstrap interval (peft_core.statistics).

Both `adapterflow report` (whenever a run has several seeds) and the B1 benchmark use this.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from peft_core.statistics import bootstrap_interval, mean_std, paired_bootstrap_gain
from peft_core.task_specs import get_task
from tasks.tracking import Tracking

PREDICTIONS_FILE = "predictions.json"  # a unit's test predictions and labels: what paired comparisons resample

BASELINE = "adapter"
COST_COLUMNS = ("trainable_params", "head_params", "wall_time_s", "peak_memory_mb")


def load_predictions(tracking: Tracking, run_id: str) -> dict | None:
    """{"predictions": [...], "labels": [...]} on the test set, or None for a unit logged without them."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracking.client().download_artifacts(run_id, PREDICTIONS_FILE, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())["test"]


def main_metric(rows: pd.DataFrame, task: str) -> str:
    """The main metric of `task`'s rows: their `main_metric` tag, or for runs logged before units
    carried it, the built-in task's."""
    tagged = rows["main_metric"].dropna() if "main_metric" in rows else ()
    return tagged.iloc[0] if len(tagged) else get_task(task).main_metric


def summarise_fits(tracking: Tracking, fits: pd.DataFrame, reference: dict[str, dict] | None = None) -> list[dict]:
    """One row per (task, method) of `fits` (columns task, method, seed, artifact_run_id, test_*):
    seeds, mean, std, a 95 % band of the mean, and the paired gain over the adapter on the same
    seeds with its interval. With `reference` ({task: test predictions}) the gain is against that
    one model instead (the recovery check's full-data adapter)."""
    out = []
    for task, rows in fits.groupby("task"):
        metric = main_metric(rows, task)
        preds = {(r.method, r.seed): load_predictions(tracking, r.artifact_run_id) for r in rows.itertuples()}
        baseline_seeds = sorted(s for m, s in preds if m == BASELINE and preds[(m, s)])
        for method, group in rows.groupby("method"):
            seeds = sorted(group["seed"])
            mean, std = mean_std(group[f"test_{metric}"])
            row = {"task": task, "method": method, "metric": metric, "seeds": len(seeds), "mean": mean, "std": std,
                   **{c: group[c].mean() for c in COST_COLUMNS if c in group}}
            mine = [preds[(method, s)] for s in seeds]
            if all(mine):
                labels = mine[0]["labels"]
                row["low"], row["high"] = bootstrap_interval(metric, [p["predictions"] for p in mine], labels)
                baseline = _baseline(preds, reference, task, method, seeds, baseline_seeds)
                if baseline is not None:
                    gain = paired_bootstrap_gain(metric, [p["predictions"] for p in mine], baseline, labels)
                    row |= {"gain": gain.mean, "gain_low": gain.low, "gain_high": gain.high}
            out.append(row)
    return out


def _baseline(preds: dict, reference: dict | None, task: str, method: str, seeds: list, baseline_seeds: list):
    if reference is not None:
        return [reference[task]["predictions"]] * len(seeds) if reference.get(task) else None
    if method == BASELINE or baseline_seeds != seeds:
        return None
    return [preds[(BASELINE, s)]["predictions"] for s in seeds]


def describe_gain(row: dict) -> str:
    """'+3.1 [+0.4, +5.8] ↑' in points of the metric ×100; ↑ / ↓ when the interval excludes 0."""
    if row.get("gain") is None or row["gain"] != row["gain"]:
        return "–"
    mark = " ↑" if row["gain_low"] > 0 else (" ↓" if row["gain_high"] < 0 else "")
    return f"{row['gain'] * 100:+.1f} [{row['gain_low'] * 100:+.1f}, {row['gain_high'] * 100:+.1f}]{mark}"
