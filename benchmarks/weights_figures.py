"""The ω / gate figures of the benchmarks: the weights report each transfer fit logged to MLflow, and
one heatmap per target (ScaLearn's ω averaged over d, PEMT's gate)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd

from tasks.tracking import result_run_id

HEATMAP_METHODS = ("scalearn", "pemt")


def weights_reports(tracking, table: pd.DataFrame, target: str) -> dict[str, dict]:
    """{method: weights.json} of the first seed's ScaLearn and PEMT fits on `target`."""
    client = tracking.client()
    reports = {}
    for method in HEATMAP_METHODS:
        rows = table[(table["task"] == target) & (table["method"] == method) & (table["stage"] == "transfer")]
        if rows.empty:
            continue
        run = client.get_run(rows["run_id"].iloc[0])
        reports[method] = load_weights(tracking, result_run_id(run))
    return reports


def load_weights(tracking, run_id: str) -> dict:
    """The weights.json (ω / gate report) a transfer fit logged to its run."""
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(tracking.client().download_artifacts(run_id, "weights.json", tmp)).read_text())


def plot_target_heatmaps(reports: dict[str, dict], target: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from peft_core.weights_plot import draw_weights_heatmap, weight_rows

    drawn = {m: r for m, r in reports.items() if weight_rows(r)}
    if not drawn:
        return None
    sites = max(len(weight_rows(r)) for r in drawn.values())
    sources = max(len(r["sources"]) for r in drawn.values())
    fig, axes = plt.subplots(1, len(drawn), figsize=(len(drawn) * (1.6 + 0.9 * sources), 1.4 + 0.45 * sites), squeeze=False)
    titles = {"scalearn": f"ScaLearn ω (mean over d) → {target}", "pemt": f"PEMT gate → {target}"}
    for ax, (method, report) in zip(axes[0], drawn.items()):
        draw_weights_heatmap(ax, report, report["sources"], titles[method], method=method)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
