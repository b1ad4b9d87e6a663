"""Benchmark B1 ("glue-mini", ../shared/BENCHMARK.md): every transfer method on real GLUE targets.

    .venv/bin/python benchmarks/glue_mini.py --profile quick   # configs/glue-mini.yaml, ~85 min on 2 cores
    .venv/bin/python benchmarks/glue_mini.py --profile full    # configs/glue-mini-full.yaml: 3 seeds, papers' epochs

Runs the real pipeline (Prefect flows, MLflow tracking; finished units, e.g. source adapters, are
reused by key), then reads the results back from MLflow and writes
`benchmarks/results/glue-mini-<profile>.{md,csv}`, one heatmap PNG per target of the ScaLearn ω and
the PEMT gate per source, and the results block of BENCHMARKS.md. `--report-only` rewrites those
from the latest pipeline run without training.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from flows.config import PipelineConfig, load_config  # noqa: E402
from benchmarks.publish import RESULTS, environment, publish_results, require_block  # noqa: E402
from benchmarks.weights_figures import plot_target_heatmaps, weights_reports  # noqa: E402
from flows.config import given  # noqa: E402
from peft_core.errors import AdapterflowError  # noqa: E402
from peft_core.task_specs import get_task  # noqa: E402
from flows.store import tracking_for  # noqa: E402

PROFILES = {"quick": REPO / "configs" / "glue-mini.yaml", "full": REPO / "configs" / "glue-mini-full.yaml"}
# METHODS.md §5: RoBERTa-base, GLUE, test = original dev, mean over seeds (percent).
PUBLISHED = {
    "full_finetune": {"stsb": 90.53, "mrpc": 86.94, "rte": 73.47, "cola": 58.46},
    "adapter": {"stsb": 90.23, "mrpc": 86.64, "rte": 72.89, "cola": 58.28},
    "hyperformer_plus_plus": {"stsb": 90.80, "mrpc": 87.83, "rte": 83.75, "cola": 54.05},
    "adapterfusion": {"stsb": 90.37, "mrpc": 88.41, "rte": 79.49, "cola": 59.04},
    "scalearn": {"stsb": 90.96, "mrpc": 87.75, "rte": 82.06, "cola": 58.47},
    "scalearn_plus_plus": {"stsb": 90.62, "mrpc": 88.21, "rte": 80.87, "cola": 59.82},
}
NO_TRANSFER = ("adapter", "full_finetune")


def results_stem(profile: str) -> str:
    return f"glue-mini-{profile}"


# -- running -----------------------------------------------------------------------------------
def run_pipeline(cfg: PipelineConfig) -> tuple[str, float]:
    from flows.stages import run_stage

    started = time.perf_counter()
    parent_run_id = run_stage(cfg, None)
    return parent_run_id, time.perf_counter() - started


# -- reading the results back ------------------------------------------------------------------
def target_results(table: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """Per (target, method): mean and std over seeds of every metric and cost column."""
    rows = table[table["task"].isin(targets) & table["stage"].isin(["transfer", "multitask"])]
    numeric = [c for c in rows.columns if c.startswith(("validation_", "test_"))
               or c in ("trainable_params", "head_params", "wall_time_s", "peak_memory_mb")]
    grouped = rows.groupby(["task", "method"])[numeric]
    out = grouped.mean().join(grouped.std(ddof=1).add_suffix("_std")).join(grouped.size().rename("seeds"))
    return out.reset_index()


def stage_spans(tracking, parent_run_id: str) -> dict[str, float]:
    """Wall-clock seconds from the first unit's start to the last unit's end, per stage, this run."""
    from tasks.tracking import PARENT_TAG

    runs = tracking.client().search_runs([tracking.experiment_id(create=False)],
                                         f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000)
    spans: dict[str, list[int]] = {}
    for run in runs:
        stage = run.data.tags.get("stage")
        if stage and run.info.end_time:
            first, last = spans.get(stage, [run.info.start_time, run.info.end_time])
            spans[stage] = [min(first, run.info.start_time), max(last, run.info.end_time)]
    return {stage: (last - first) / 1000 for stage, (first, last) in spans.items()}


# -- writing -----------------------------------------------------------------------------------
def sizes_line(cfg: PipelineConfig) -> str:
    t, d = cfg.training, cfg.data
    return (f"sources: {d.max_train or 'all'} train examples each, {t.sources.epochs} epochs at lr {t.sources.learning_rate}; "
            f"targets: {d.max_train_targets or d.max_train or 'all'} train examples, {t.targets.epochs} epochs "
            f"(patience {t.targets.patience}); validation/test capped at {d.max_eval or 'none'}; multitask "
            f"{t.multitask.epochs} epoch(s) at lr {t.multitask.learning_rate}; batch {t.targets.batch_size}, "
            f"max length {t.targets.max_length}; seeds {cfg.seeds}; {cfg.runner.workers} {cfg.runner.kind} workers")


def _cell(row: pd.Series, column: str, scale: float = 1.0) -> str:
    value = row.get(column)
    if value is None or value != value:
        return "–"
    std = row.get(f"{column}_std")
    text = f"{value * scale:.2f}"
    return text + (f" ± {std * scale:.2f}" if std == std and std is not None and row["seeds"] > 1 else "")


def results_table(results: pd.DataFrame, targets: list[str]) -> str:
    lines = ["| target | method | test (main metric ×100) | other test metrics ×100 | Δ vs adapter | published (RoBERTa-base) "
             "| transfer params | head params | wall s | peak MB |", "|" + "---|" * 10]
    for target in targets:
        spec = get_task(target)
        main = f"test_{spec.main_metric}"
        rows = results[results["task"] == target]
        base = rows.loc[rows["method"] == "adapter", main]
        for _, row in rows.sort_values(main, ascending=False).iterrows():
            others = ", ".join(f"{m} {_cell(row, f'test_{m}', 100)}" for m in spec.metrics if m != spec.main_metric)
            delta = f"{(row[main] - base.iloc[0]) * 100:+.2f}" if not base.empty and row["method"] != "adapter" else ""
            published = PUBLISHED.get(row["method"], {}).get(target)
            lines.append(f"| {target} | {row['method']} | {spec.main_metric} {_cell(row, main, 100)} | {others} | {delta} | "
                         f"{published if published is not None else '–'} | {_count(row['trainable_params'])} | "
                         f"{_count(row['head_params'])} | {_count(row['wall_time_s'])} | {_count(row['peak_memory_mb'])} |")
    return "\n".join(lines)


def _count(value) -> str:
    return "–" if value != value else f"{int(value):,}"


def ordering_findings(results: pd.DataFrame, targets: list[str]) -> list[str]:
    """Per target: our order of the published methods against the papers', and who falls below the adapter."""
    lines = []
    for target in targets:
        main = f"test_{get_task(target).main_metric}"
        rows = results[results["task"] == target].set_index("method")[main]
        shared = [m for m in PUBLISHED if m in rows.index and target in PUBLISHED[m]]
        ours = sorted(shared, key=lambda m: -rows[m])
        papers = sorted(shared, key=lambda m: -PUBLISHED[m][target])
        below = [m for m in rows.index if m not in NO_TRANSFER and "adapter" in rows.index and rows[m] < rows["adapter"]]
        lines.append(f"- **{target}**: ours {' > '.join(ours)}; papers {' > '.join(papers)}. "
                     f"Transfer methods below the no-transfer adapter: {', '.join(below) or 'none'}.")
    return lines


def write_outputs(profile: str, cfg: PipelineConfig, tracking, parent_run_id: str, seconds: float | None) -> str:
    from tasks.reporting import comparison_table

    table = comparison_table(tracking, parent_run_id)
    results = target_results(table, cfg.targets)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = results_stem(profile)
    results.to_csv(RESULTS / f"{stem}.csv", index=False)
    heatmaps = [plot_target_heatmaps(weights_reports(tracking, table, t), t, RESULTS / f"{stem}-{t}-weights.png")
                for t in cfg.targets]
    spans = stage_spans(tracking, parent_run_id)
    sources_reused = table[table["stage"] == "sources"]["reused"].all()
    env = environment(cfg)
    timing = [f"- Whole pipeline: {seconds / 60:.1f} min" if seconds else "- Whole pipeline: not timed (--report-only)",
              "- Per stage (first unit start to last unit end): "
              + ", ".join(f"{s} {v / 60:.1f} min" for s, v in sorted(spans.items(), key=lambda kv: kv[1], reverse=True)),
              f"- Source adapters: {'reused from MLflow' if sources_reused else 'trained in this run'}"]
    if seconds and not sources_reused:
        timing.append(f"- With the sources already in MLflow the same run would take about "
                      f"{(seconds - spans.get('sources', 0.0)) / 60:.1f} min (the whole run minus the sources stage)")
    return publish_results(stem, [
        f"# glue-mini, {profile} profile",
        "",
        f"Written by `benchmarks/glue_mini.py --profile {profile}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"from MLflow pipeline run `{parent_run_id}` (experiment `{tracking.experiment}`).",
        "",
        *(f"- {k}: {v}" for k, v in env.items()),
        f"- config: `{PROFILES[profile].relative_to(REPO)}`; {sizes_line(cfg)}",
        "",
        "## Time",
        *timing,
        "",
        "## Targets",
        "Test = the original GLUE dev set (capped as above); metrics ×100; mean ± std over seeds where seeds > 1. "
        "Transfer params exclude the head; HyperFormer++'s count is its whole jointly trained hypernetwork "
        "(shared by all eight tasks). Wall time and peak memory are per unit (units ran in parallel "
        "threads, so peak memory is the process's and overlaps).",
        "",
        results_table(results, cfg.targets),
        "",
        "## Ordering against the papers",
        *ordering_findings(results, cfg.targets),
        "",
        "## Weights per source",
        *(f"![{t}]({h.name})" for t, h in zip(cfg.targets, heatmaps) if h),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--data-dir", help="GLUE folder (default: the config's, ../shared/data/glue)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the results from the latest pipeline run")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(PROFILES[args.profile], **given({"data.path": args.data_dir}))
        require_block(results_stem(args.profile))
        from tasks.reporting import latest_pipeline_run

        tracking = tracking_for(cfg)
        if args.report_only:
            parent_run_id, seconds = latest_pipeline_run(tracking).info.run_id, None
        else:
            print(f"glue-mini {args.profile}: {sizes_line(cfg)}", flush=True)
            parent_run_id, seconds = run_pipeline(cfg)
        print(write_outputs(args.profile, cfg, tracking, parent_run_id, seconds))
    except AdapterflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
