"""Benchmark B1 "glue-lowres" (../shared/BENCHMARK.md): transfer on low-resource targets, with seeds.

    .venv/bin/python benchmarks/glue_lowres.py --profile cpu     # 2-core CPU budget (k and seeds below)
    .venv/bin/python benchmarks/glue_lowres.py --profile full    # more k, 5 seeds, the papers' 1,000 steps
    .venv/bin/python benchmarks/glue_lowres.py --report-only     # rewrite the results from MLflow

Runs `configs/glue-lowres.yaml` through the real pipeline once per k of the profile (the source
adapters train once, on all their data, and every later run reuses them from MLflow), then the
recovery check (the target's own full-data source adapter among ScaLearn's sources). It reads every
fit's test predictions back from MLflow and writes `benchmarks/results/glue-lowres-<profile>.{md,csv}`,
a learning-curve PNG per target, the ω / gate heatmaps, and the generated block of BENCHMARKS.md.

Statistics: per (target, k, method) the mean ± std over seeds of the main test metric, and the paired
gain over the no-transfer adapter (same seed, same sample, same test examples) with a 95 % bootstrap
interval that resamples seeds and test examples together (peft_core/statistics.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import pandas as pd  # noqa: E402

from flows.config import PipelineConfig, load_config, parse_overrides  # noqa: E402
from benchmarks.publish import RESULTS, environment, publish_results, require_block  # noqa: E402
from benchmarks.weights_figures import plot_target_heatmaps, weights_reports  # noqa: E402
from peft_core.errors import AdapterflowError  # noqa: E402
from peft_core.statistics import paired_bootstrap_gain  # noqa: E402
from tasks.seed_comparison import BASELINE, describe_gain, load_predictions, main_metric, summarise_fits  # noqa: E402
from flows.store import tracking_for  # noqa: E402

CONFIG = REPO / "configs" / "glue-lowres.yaml"
RECOVERY_METHODS = ["scalearn"]
# Run in the all-targets run after the transfer methods and the recovery check: full fine-tuning (the
# costliest fits) and HyperFormer++ few-shot, whose joint model holds the sources that are not targets,
# so a run narrowed to one target would train another joint model for each target.
DEFERRED_METHODS = ("full_finetune", "hyperformer_plus_plus_few_shot")


@dataclass(frozen=True)
class Profile:
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    note: str
    max_steps: int | None = None  # per fit, at every k (None: the config's budget, training.target_steps)
    overrides: dict = field(default_factory=dict)  # config keys the profile sets (beyond k, seeds and steps)
    larger_k_methods: tuple[str, ...] | None = None  # the methods at every k but the smallest (None: all)
    narrowed: dict = field(default_factory=dict)  # --targets / --methods: config overrides for a part of the profile


PROFILES = {
    # Every method of the config at k = 32, where the papers claim the most; at k = 256 the three that
    # answer the main question (no transfer and the two ScaLearns). The budget grows with k
    # (training.target_steps: 60 steps at k = 32, 240 at k = 256), so a k = 256 fit costs about twice
    # one at k = 32 (43 s of a fit at 60 steps was evaluation and set-up, measured at d2167a5): keeping
    # all five methods of the 60-step profile at k = 256 would have taken it to about 2 h. Seeds stay 3
    # (the intervals need them). Measured: 71 min on 2 idle cores with the one-time units imported (BENCHMARKS.md).
    "cpu": Profile((32, 256), (1, 2, 3), "sized for 2 CPU cores (about 90 min with the one-time units cached)",
                   larger_k_methods=("adapter", "scalearn", "scalearn_plus_plus")),
    "full": Profile((16, 32, 100, 1000), (1, 2, 3, 4, 5),
                    "for a GPU or a night: ScaLearn's 1,000 steps at the published rates, 5 seeds", 1000,
                    {"transfer.learning_rate": {"default": "published"}}),
}


def profile_config(profile: Profile, k: int, data_dir: str | None, **extra) -> PipelineConfig:
    steps = {} if profile.max_steps is None else {"training.targets.max_steps": profile.max_steps,
                                                  "training.target_steps": None}
    return load_config(CONFIG, **{"data.path": data_dir, "data.few_shot.k": k, "seeds": list(profile.seeds),
                                  **steps, **profile.overrides, **profile.narrowed, **extra})


def k_run_config(profile: Profile, k: int, data_dir: str | None) -> PipelineConfig | None:
    """The run of the profile at `k`: every method at the smallest k, `larger_k_methods` above it
    (None: none of the methods runs at this k)."""
    cfg = profile_config(profile, k, data_dir)
    if k == profile.ks[0] or not profile.larger_k_methods:
        return cfg
    larger = [m for m in cfg.methods if m in profile.larger_k_methods]
    return profile_config(profile, k, data_dir, methods=larger) if larger else None


def recovery_config(profile: Profile, data_dir: str | None) -> PipelineConfig:
    """ScaLearn over every source including the target's own full-data source adapter."""
    return profile_config(replace(profile, narrowed={k: v for k, v in profile.narrowed.items() if k != "methods"}),
                          profile.ks[0], data_dir, methods=RECOVERY_METHODS,
                          **{"transfer.source_set": {"default": "all"}})


# -- reading back ------------------------------------------------------------------------------
def unit_rows(tracking, parent_run_id: str) -> pd.DataFrame:
    """One row per finished unit of a pipeline run: stage, task, method, seed, metrics, and the run
    that holds its artifacts (itself, or the earlier run it reused)."""
    from tasks.tracking import PARENT_TAG, result_run_id

    client = tracking.client()
    rows = []
    for run in client.search_runs([tracking.experiment_id(create=False)], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=5000):
        tags = run.data.tags
        if run.info.status != "FINISHED" or tags.get("stage") not in ("sources", "transfer"):
            continue
        source_run = result_run_id(run)
        params = client.get_run(source_run).data.params if source_run != run.info.run_id else run.data.params
        rows.append({"stage": tags["stage"], "task": tags["task"], "method": tags["method"],
                     "seed": int(params.get("seed", -1)), "learning_rate": float(params.get("training.learning_rate", "nan")),
                     "artifact_run_id": source_run, **run.data.metrics})
    return pd.DataFrame(rows)


def summarise(tracking, units: pd.DataFrame, k: int, reference: dict[str, dict] | None = None) -> list[dict]:
    """Per (target, method) of one run's transfer fits: the seed statistics of tasks/seed_comparison.py
    and the training loss of each round, mean over seeds."""
    fits = units[units["stage"] == "transfer"]
    losses = train_losses(tracking, fits)
    rows = []
    for row in summarise_fits(tracking, fits, reference):
        task = row.pop("task")
        rows.append(row | {"target": task, "k": k, "train_loss_by_round": losses.get((task, row["method"]))})
    return rows


def train_losses(tracking, fits: pd.DataFrame) -> dict[tuple[str, str], list[float]]:
    """{(task, method): mean training loss of each round over the seeds}, from the fits' MLflow histories."""
    client = tracking.client()
    out = {}
    for (task, method), group in fits.groupby(["task", "method"]):
        by_seed = [[m.value for m in sorted(client.get_metric_history(r, "train_loss"), key=lambda m: m.step)]
                   for r in group["artifact_run_id"]]
        rounds = min(map(len, by_seed))
        if rounds:
            out[(task, method)] = [sum(seed[i] for seed in by_seed) / len(by_seed) for i in range(rounds)]
    return out


def against_profile(variant_fits: pd.DataFrame, profile_fits: pd.DataFrame, k: int,
                    predictions: Callable[[str], dict | None]) -> list[dict]:
    """Per (target, method) a variant shares with the profile's own run at `k`: variant − profile on the
    seeds both have (the same samples and test examples, so paired), with its 95 % interval; `same`
    where both are the very same fits (a setting the variant does not change)."""
    rows = []
    for (task, method), mine in variant_fits.groupby(["task", "method"]):
        theirs = profile_fits[(profile_fits["task"] == task) & (profile_fits["method"] == method)]
        seeds = sorted(set(mine["seed"]) & set(theirs["seed"]))
        if not seeds:
            continue
        runs = [[frame.set_index("seed").loc[s, "artifact_run_id"] for s in seeds] for frame in (mine, theirs)]
        metric = main_metric(mine, task)
        row = {"target": task, "k": k, "method": method, "metric": metric, "seeds": len(seeds),
               **{name: frame[frame["seed"].isin(seeds)][f"test_{metric}"].mean()
                  for name, frame in (("variant", mine), ("profile", theirs))}}
        if runs[0] == runs[1]:
            rows.append(row | {"same": True})
            continue
        loaded = [[predictions(run) for run in side] for side in runs]
        if all(p for side in loaded for p in side):
            gain = paired_bootstrap_gain(metric, *([p["predictions"] for p in side] for side in loaded),
                                         loaded[0][0]["labels"])
            row |= {"gain": gain.mean, "gain_low": gain.low, "gain_high": gain.high}
        rows.append(row)
    return rows


def source_scores(units: pd.DataFrame) -> pd.DataFrame:
    sources = units[(units["stage"] == "sources")]
    cols = ["task", "method"] + sorted(c for c in sources.columns if c.startswith(("validation_", "test_")))
    return sources[cols + [c for c in ("best_epoch", "wall_time_s") if c in sources]].sort_values(["method", "task"])


def _step_budget(cfg: PipelineConfig, profile: Profile) -> str:
    """The fits' step budget in words: fixed, or per k from training.target_steps."""
    rule = cfg.training.target_steps
    if rule is None:
        return f"{cfg.training.targets.max_steps} steps"
    per_k = ", ".join(f"{rule.steps(k, cfg.training.targets.batch_size)} at k = {k}" for k in profile.ks)
    return f"{rule.passes:g} passes over the sample, at least {rule.min_steps} steps ({per_k})"


# -- writing -----------------------------------------------------------------------------------
def learning_curves(results: pd.DataFrame, target: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results[(results["target"] == target) & results["recovery"].eq(False)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, group in rows.groupby("method"):
        group = group.sort_values("k")
        line, = ax.plot(group["k"], group["mean"] * 100, marker="o", label=method, lw=2.5 if method == BASELINE else 1.4)
        if "low" in group:
            ax.fill_between(group["k"], group["low"] * 100, group["high"] * 100, alpha=0.12, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xticks(sorted(rows["k"].unique()), labels=[str(k) for k in sorted(rows["k"].unique())])
    ax.set_xlabel("k training examples")
    ax.set_ylabel(f"test {rows['metric'].iloc[0]} ×100")
    ax.set_title(f"{target}: mean over seeds, 95 % bootstrap band (seeds × test examples)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{value * 100:.1f}"


def _interval(row) -> str:
    return describe_gain(row).replace(" ↑", " **↑**").replace(" ↓", " **↓**")


def results_table(results: pd.DataFrame) -> str:
    lines = ["| target | k | method | test ×100 (mean ± std) | 95 % band | gain over adapter [95 % CI] | transfer params "
             "| wall s |", "|" + "---|" * 8]
    for (target, k), rows in results[~results["recovery"]].groupby(["target", "k"]):
        for _, r in rows.sort_values("mean", ascending=False).iterrows():
            band = f"[{_pct(r.get('low'))}, {_pct(r.get('high'))}]"
            params = "–" if r.get("trainable_params") != r.get("trainable_params") else f"{int(r['trainable_params']):,}"
            lines.append(f"| {target} | {k} | {r['method']} | {r['metric']} {_pct(r['mean'])} ± {_pct(r['std'])} | {band} | "
                         f"{_interval(r)} | {params} | {r.get('wall_time_s', float('nan')):.0f} |")
    return "\n".join(lines)


def train_loss_table(results: pd.DataFrame) -> str:
    """Training loss at the end of each round, mean over seeds: where a fit stops learning."""
    rows = results[~results["recovery"]]
    if "train_loss_by_round" not in rows or rows["train_loss_by_round"].isna().all():
        return "Not recorded."
    rounds = max(len(v) for v in rows["train_loss_by_round"].dropna())
    lines = ["| target | k | method | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " |",
             "|" + "---|" * (3 + rounds)]
    for _, r in rows.sort_values(["target", "k", "method"]).iterrows():
        if isinstance(r["train_loss_by_round"], list):
            lines.append(f"| {r['target']} | {r['k']} | {r['method']} | " +
                         " | ".join(f"{v:.2g}" for v in r["train_loss_by_round"]) + " |")
    return "\n".join(lines)


def recovery_table(results: pd.DataFrame, sources: pd.DataFrame) -> str:
    rows = results[results["recovery"]]
    if rows.empty:
        return "Not run."
    lines = ["| target | k | method | test ×100 | full-data own adapter ×100 | difference [95 % CI] |", "|" + "---|" * 6]
    for _, r in rows.iterrows():
        own = sources[(sources["task"] == r["target"]) & (sources["method"] == "adapter")]
        own_score = own[f"test_{r['metric']}"].iloc[0] if not own.empty else float("nan")
        lines.append(f"| {r['target']} | {r['k']} | {r['method']} | {_pct(r['mean'])} ± {_pct(r['std'])} | "
                     f"{_pct(own_score)} | {_interval(r)} |")
    return "\n".join(lines)


def against_profile_table(rows: list[dict]) -> str:
    if not rows:
        return "The profile's own runs at these k are not in this store: nothing to pair with."
    lines = ["| target | k | method | variant ×100 | profile ×100 | variant − profile [95 % CI] |", "|" + "---|" * 6]
    for r in sorted(rows, key=lambda r: (r["target"], r["k"], r["method"])):
        difference = "the same fits" if r.get("same") else _interval(r)
        lines.append(f"| {r['target']} | {r['k']} | {r['method']} | {r['metric']} {_pct(r['variant'])} | "
                     f"{_pct(r['profile'])} | {difference} |")
    return "\n".join(lines)


def findings(results: pd.DataFrame) -> list[str]:
    lines = []
    main = results[~results["recovery"] & results["method"].ne(BASELINE)]
    for (target, k), rows in main.groupby(["target", "k"]):
        up = rows[rows["gain_low"] > 0]["method"].tolist() if "gain_low" in rows else []
        down = rows[rows["gain_high"] < 0]["method"].tolist() if "gain_high" in rows else []
        lines.append(f"- **{target}, k = {k}**: above the adapter with the interval above 0: {', '.join(up) or 'none'}; "
                     f"below it with the interval below 0: {', '.join(down) or 'none'}; the rest cannot be told apart.")
    return lines


def write_outputs(stem: str, command: str, profile: Profile, cfg: PipelineConfig, results: pd.DataFrame,
                  sources: pd.DataFrame, heatmaps: dict[str, Path | None], seconds: dict[str, float],
                  rates: dict[str, float], paired: list[dict] | None = None) -> str:
    """The results files and the BENCHMARKS.md block; `paired` (a variant's): its fits against the profile's."""
    results.to_csv(RESULTS / f"{stem}.csv", index=False)
    sources.to_csv(RESULTS / f"{stem}-sources.csv", index=False)
    curves = {t: learning_curves(results, t, RESULTS / f"{stem}-{t}-curve.png") for t in cfg.targets
              if not results.empty and (results["target"].eq(t) & ~results["recovery"]).any()}
    t = cfg.training.targets
    return publish_results(stem, [
        f"# {stem}",
        "",
        f"Written by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(experiment `{cfg.experiment_name()}`).",
        "",
        *(f"- {key}: {value}" for key, value in environment(cfg).items()),
        f"- profile: {profile.note}; k = {list(profile.ks)} training examples per target (label-balanced, drawn per "
        f"seed; as many for validation), seeds {list(profile.seeds)}; test = the whole original dev set"
        + (f"; at k > {profile.ks[0]} the methods {', '.join(profile.larger_k_methods)}" if profile.larger_k_methods and len(profile.ks) > 1 else ""),
        f"- every fit: {_step_budget(cfg, profile)} at batch {t.batch_size}, max length {t.max_length}, {t.epochs} rounds, "
        f"the last kept; learning rates (as the fits logged them): {dict(sorted(rates.items()))} (config: transfer.learning_rate "
        f"{dict(cfg.transfer.learning_rate)}); precision "
        f"{t.precision}; sources: {dict(cfg.transfer.source_set)}; head: {dict(cfg.transfer.head_init)}",
        "- time: " + ", ".join(f"{name} {value / 60:.1f} min" for name, value in seconds.items())
        + (f"; in all {sum(seconds.values()) / 60:.1f} min" if seconds else ""),
        "",
        "## Sources (trained once, all their data but MNLI, QQP and SST-2, capped at 10,000)",
        "",
        sources.to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Targets",
        "Gain = method − adapter on the same seed and sample, mean over seeds; the 95 % interval resamples seeds and "
        "test examples together. **↑** / **↓**: the interval excludes 0, so the difference is more than the seeds "
        "and the test set's chance; without a mark the data cannot tell the method from the adapter.",
        "",
        results_table(results),
        "",
        *findings(results),
        "",
        "## Training loss by round (mean over seeds; each round is a fifth of the step budget)",
        "",
        train_loss_table(results),
        "",
        "## Recovery check (the target's own full-data adapter among the sources)",
        "",
        recovery_table(results, sources),
        "",
        *(["## Against the profile's own fits (the same seeds, samples and test examples: paired)",
           "Variant − profile, mean over seeds, with the interval as above; **↑** / **↓**: the variant's setting "
           "changes the score by more than the seeds and the test set's chance.",
           "", against_profile_table(paired), ""] if paired is not None else []),
        "## Learning curves and weights",
        *(f"![{t}]({p.name})" for t, p in curves.items()),
        *(f"![{t} weights]({p.name})" for t, p in heatmaps.items() if p),
        "",
    ])


# -- running -----------------------------------------------------------------------------------
def run(profile_name: str, data_dir: str | None, report_only: bool, narrowed: dict | None = None,
        ks: list[int] | None = None, variant: str | None = None, command: str = "") -> str:
    """The profile (or part of it: `narrowed` config overrides, `ks`); a `variant` (its overrides in
    `narrowed`) publishes as glue-lowres-<profile>-<variant>, beside the profile's own results."""
    from flows.stages import run_stage

    profile = replace(PROFILES[profile_name], narrowed=narrowed or {}, ks=tuple(ks or PROFILES[profile_name].ks))
    stem = f"glue-lowres-{profile_name}" + (f"-{variant}" if variant else "")
    require_block(stem)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summaries, seconds, heatmaps, rates = [], {}, {}, {}
    # The smallest k target by target, the recovery check after the first two, the deferred methods,
    # then the other k. The results are rewritten after every run, so an interrupted benchmark
    # still publishes what finished (and a re-run resumes from what MLflow holds).
    first, *rest = profile.ks
    everything = profile_config(profile, first, data_dir)
    early = [m for m in everything.methods if m not in DEFERRED_METHODS]
    by_target = [(f"k={first}, {t} (without {', '.join(DEFERRED_METHODS)})",
                  profile_config(profile, first, data_dir, methods=early, targets=[t]), first, False)
                 for t in everything.targets]
    runs = [*by_target[:2], ("recovery", recovery_config(profile, data_dir), first, True), *by_target[2:],
            (f"k={first}", everything, first, False)]  # reuses every finished fit, adds the deferred ones
    runs += [(f"k={k}", cfg, k, False) for k in rest if (cfg := k_run_config(profile, k, data_dir))]
    sources = pd.DataFrame()
    body = ""
    paired: dict[tuple, dict] | None = {} if variant else None
    profile_fits: dict[int, pd.DataFrame] = {}
    for label, cfg, k, recovery in runs:
        tracking = tracking_for(cfg)
        if report_only:
            parent = latest_run_of(tracking, cfg)
        else:
            print(f"glue-lowres {profile_name}: {label}", flush=True)
            started = time.perf_counter()
            parent = run_stage(cfg, None)
            seconds[label] = time.perf_counter() - started
        if parent is None:
            continue
        units = unit_rows(tracking, parent)
        if sources.empty:
            sources = source_scores(units)
        reference = None
        if recovery:
            full = units[(units["stage"] == "sources") & (units["method"] == "adapter")]
            reference = {r.task: load_predictions(tracking, r.artifact_run_id) for r in full.itertuples()}
        latest = {(r["target"], r["k"], r["method"], recovery): r | {"recovery": recovery}
                  for r in summarise(tracking, units, k, reference)}
        summaries = [r for r in summaries if (r["target"], r["k"], r["method"], r["recovery"]) not in latest]
        summaries += list(latest.values())
        fits = units[units["stage"] == "transfer"]
        rates |= fits.groupby("method")["learning_rate"].first().to_dict()
        if paired is not None and not recovery:
            if k not in profile_fits:  # the profile's own run at k, looked up once per k
                own = latest_run_of(tracking, k_run_config(PROFILES[profile_name], k, data_dir))
                profile_fits[k] = unit_rows(tracking, own).query("stage == 'transfer'") if own else pd.DataFrame()
            if not profile_fits[k].empty:
                paired |= {(r["target"], k, r["method"]): r for r in
                           against_profile(fits, profile_fits[k], k, lambda run: load_predictions(tracking, run))}
        if not recovery and k == profile.ks[0]:
            table = units.rename(columns={"artifact_run_id": "run_id"})
            heatmaps |= {t: plot_target_heatmaps(weights_reports(tracking, table, t), t,
                                                 RESULTS / f"{stem}-{t}-weights.png")
                         for t in cfg.targets}
        body = write_outputs(stem, command, profile, everything, pd.DataFrame(summaries), sources, heatmaps, seconds,
                             rates, None if paired is None else list(paired.values()))
    return body


def same_settings(logged, wanted) -> bool:
    """A logged config's settings are `wanted`'s; a setting added since it was logged matches when unset."""
    if isinstance(logged, dict) and isinstance(wanted, dict):
        return all(same_settings(logged[k], v) if k in logged else v in (None, {}, []) for k, v in wanted.items()) \
            and set(logged) <= set(wanted)
    return logged == wanted


def latest_run_of(tracking, cfg: PipelineConfig) -> str | None:
    """The newest finished pipeline run whose config matches `cfg` (k, methods, source sets)."""
    from tasks.tracking import KIND_TAG

    wanted = cfg.model_dump(mode="json")
    client = tracking.client()
    for run in client.search_runs([tracking.experiment_id(create=False)], f"tags.`{KIND_TAG}` = 'pipeline' and "
                                  "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]):
        with tempfile.TemporaryDirectory() as tmp:
            logged = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json", tmp)).read_text())
        if all(same_settings(logged.get(key), wanted[key]) for key in ("data", "methods", "transfer", "seeds", "training")):
            return run.info.run_id
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--data-dir", help="GLUE folder (default: the config's, ../shared/data/glue)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the results from MLflow without training")
    parser.add_argument("--targets", help="comma-separated: run these targets of the profile only, in this order")
    parser.add_argument("--methods", help="comma-separated: run these methods of the profile only")
    parser.add_argument("--ks", help="comma-separated: run these k of the profile only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run (as adapterflow run --set); needs --variant")
    parser.add_argument("--variant", help="name of the --set experiment: results go to glue-lowres-<profile>-<name>")
    args = parser.parse_args(argv)
    if bool(args.set) != bool(args.variant):
        parser.error("--set and --variant go together: name the experiment whose overrides --set gives")
    if args.ks and not all(k.strip().isdigit() for k in args.ks.split(",")):
        parser.error(f"--ks {args.ks}: give whole numbers separated by commas, e.g. --ks 32")
    ks = [int(k) for k in args.ks.split(",")] if args.ks else None
    narrowed = {key: getattr(args, key).split(",") for key in ("targets", "methods") if getattr(args, key)}
    command = "benchmarks/glue_lowres.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        narrowed |= parse_overrides(args.set)
        print(run(args.profile, args.data_dir, args.report_only, narrowed, ks, args.variant, command))
    except AdapterflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
