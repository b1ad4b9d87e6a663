"""Where ScaLearn's ω ends, per dimension: the B1 investigation of "does ω move, not only on average?"

    .venv/bin/python benchmarks/omega_per_dimension.py            # the cpu profile's k = 32 fits and recovery

Reads the saved ω (`weights.json`, logged by every transfer fit) of the ScaLearn fits of the newest
`benchmarks/glue_lowres.py --profile cpu` run from MLflow, and writes per (target, method, seed):
the share of ω entries that end more than 0.1 from their start (2/K), the spread of ω across the
hidden dimensions (std over dimensions, averaged over sources and sites), the mean ω of the
target's own adapter and the range of the other sources' means. Results:
`benchmarks/results/omega-per-dimension.{md,json}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402

from benchmarks.publish import RESULTS  # noqa: E402
from benchmarks.weights_figures import load_weights  # noqa: E402
from glue_lowres import PROFILES, latest_run_of, profile_config, recovery_config, unit_rows  # noqa: E402
from peft_core.compositions.scalearn import SCALEARN_VARIANTS  # noqa: E402
from flows.store import tracking_for  # noqa: E402

MOVED = 0.1  # an entry "moved" when it ends this far from its start


def omega_summary(report: dict, target: str) -> dict:
    """The statistics of one fit's weights.json (ω per site: (K, d), or (K,) for the uniform variants)."""
    sources = report["sources"]
    start = 2.0 / len(sources)
    # per-dimension variants report ω per site in `details`; the uniform ones only the per-source `weights`
    per_site = [np.asarray(report["details"].get(site, {}).get("omega") or [[w] for w in weights])
                for site, weights in zip(report["sites"], report["weights"])]
    omega = np.stack(per_site)  # (sites, K, d)
    means = omega.mean(axis=(0, 2))
    own = sources.index(target) if target in sources else None
    others = [m for i, m in enumerate(means) if i != own]
    return {"moved_share": float((np.abs(omega - start) > MOVED).mean()),
            "dimension_std": float(omega.std(axis=2).mean()) if omega.shape[2] > 1 else None,
            "own_mean": None if own is None else float(means[own]),
            "others_mean_range": [float(min(others)), float(max(others))], "start": start}


def collect(data_dir: str | None) -> list[dict]:

    profile = PROFILES["cpu"]
    rows = []
    for label, cfg in (("k = 32", profile_config(profile, profile.ks[0], data_dir)),
                       ("recovery", recovery_config(profile, data_dir))):
        tracking = tracking_for(cfg)
        parent = latest_run_of(tracking, cfg)
        if parent is None:
            print(f"no finished glue-lowres cpu run for {label}: run benchmarks/glue_lowres.py --profile cpu first")
            continue
        units = unit_rows(tracking, parent)
        fits = units[(units["stage"] == "transfer") & units["method"].isin(list(SCALEARN_VARIANTS))]
        for fit in fits.sort_values(["task", "method", "seed"]).itertuples():
            rows.append({"run": label, "target": fit.task, "method": fit.method, "seed": fit.seed,
                         **omega_summary(load_weights(tracking, fit.artifact_run_id), fit.task)})
    return rows


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def markdown(rows: list[dict]) -> str:
    lines = ["# ω per dimension (ScaLearn fits of the glue-lowres cpu profile)", "",
             f"Written by `benchmarks/omega_per_dimension.py`. ω starts at 2/K (K sources, {rows[0]['start']:.3f} for K = "
             f"{round(2 / rows[0]['start'])}); 'moved' = the share of entries that end more than {MOVED} from it; "
             "'spread' = std of ω across the hidden dimensions, mean over sources and sites; 'own' = mean ω of the "
             "target's own adapter (its k-shot no-transfer adapter; in the recovery run its full-data source adapter).",
             "", "| run | target | method | seed | moved | spread | own mean | others' means |", "|" + "---|" * 8]
    for r in rows:
        low, high = r["others_mean_range"]
        lines.append(f"| {r['run']} | {r['target']} | {r['method']} | {r['seed']} | {r['moved_share'] * 100:.0f} % | "
                     f"{_fmt(r['dimension_std'], '{:.3f}')} | {_fmt(r['own_mean'], '{:.3f}')} | {low:.3f}–{high:.3f} |")
    lines += ["", "Mean over seeds:", "", "| run | target | method | moved | spread | own mean |", "|" + "---|" * 6]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["run"], r["target"], r["method"]), []).append(r)
    for (run, target, method), group in groups.items():
        spread = [g["dimension_std"] for g in group if g["dimension_std"] is not None]
        own = [g["own_mean"] for g in group if g["own_mean"] is not None]
        lines.append(f"| {run} | {target} | {method} | {statistics.mean(g['moved_share'] for g in group) * 100:.0f} % | "
                     f"{_fmt(statistics.mean(spread) if spread else None, '{:.3f}')} | "
                     f"{_fmt(statistics.mean(own) if own else None, '{:.3f}')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the GLUE folder the benchmark ran on (default: the config's)")
    args = parser.parse_args(argv)
    rows = collect(args.data_dir)
    if not rows:
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "omega-per-dimension.json").write_text(json.dumps(rows, indent=2))
    text = markdown(rows)
    (RESULTS / "omega-per-dimension.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
