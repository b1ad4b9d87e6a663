"""B4: what orchestration costs — the same small workload through peft_core directly and through
the Prefect flows with MLflow tracking.

    python benchmarks/overhead.py                 # demo tasks on MiniLM, two workload sizes
    python benchmarks/overhead.py --sizes 32,96   # quicker

Workload: two demo source adapters, a ScaLearn fit and a plain adapter on the demo target, at two
training-set sizes. For each size it times (a) the peft_core calls in a plain loop, (b) the
`pipeline` flow on a fresh MLflow store, (c) the same pipeline again (every unit cached in MLflow),
and (d) the pipeline with its last stage forced to redo its units (`force_stages: [evaluate]`,
what a re-run after that stage failed has to do). The pipeline's fixed and proportional overhead
come from a straight line through (direct seconds, pipeline seconds) of the two sizes.
Results go to benchmarks/results/overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import transformers

from flows.stages import run_stage
from flows.config import load_config
from peft_core.backbones import load_backbone
from peft_core.data import load_task_data
from peft_core.adapter_jobs import evaluate_adapter, train_adapter
from peft_core.task_specs import get_task
from peft_core.transfer import fit_transfer

RESULTS = Path(__file__).parent / "results"
SOURCES, TARGET = ["demo_sentiment", "demo_nli"], "demo_lowres"


def workload_config(home: Path, size: int, epochs: int):
    return load_config(None, **{
        "home": str(home), "name": f"overhead-{size}", "sources": SOURCES, "targets": [TARGET],
        "methods": ["adapter", "scalearn"], "data.max_train": size, "data.max_eval": 32,
        "training.sources.epochs": epochs, "training.targets.epochs": epochs, "runner.workers": 1,
    })


def run_direct(cfg, work: Path) -> float:
    """The pipeline's units as plain peft_core calls (no Prefect, no MLflow): train, fit, re-evaluate."""
    started = time.perf_counter()
    backbone = load_backbone(cfg.backbone)
    adapters = []
    for name, settings in [(s, cfg.training.sources) for s in SOURCES] + [(TARGET, cfg.training.targets)]:
        spec = get_task(name)
        splits = load_task_data(spec, "demo", max_train=cfg.data.max_train, max_eval=cfg.data.max_eval)
        train_adapter(backbone, spec, splits, cfg.adapter.to_core(), settings.to_core(42), work / name)
        adapters.append((work / name, spec, splits))
    target, target_splits = adapters[-1][1], adapters[-1][2]
    fit_transfer(backbone, target, target_splits, "scalearn", [a[0] for a in adapters[:-1]],
                 cfg.training.targets.to_core(42), work / "fit")
    for folder, spec, splits in adapters:  # the pipeline's evaluate stage
        evaluate_adapter(folder, backbone, spec, splits)
    return time.perf_counter() - started


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(size: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = workload_config(Path(tmp) / "home", size, epochs)
        direct = run_direct(cfg, Path(tmp) / "direct")
        pipeline = timed(lambda: run_stage(cfg, None))
        cached = timed(lambda: run_stage(cfg, None))
        last_stage = timed(lambda: run_stage(cfg.model_copy(update={"force_stages": ["evaluate"]}), None))
    return {"size": size, "direct_s": direct, "pipeline_s": pipeline, "cached_rerun_s": cached,
            "last_stage_rerun_s": last_stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,540", help="two training-set sizes per task (540 = all demo data)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # start Prefect's temporary API once, outside the timings
        run_stage(workload_config(Path(tmp), 8, 1), "prepare")
    rows = [measure(int(s), args.epochs) for s in args.sizes.split(",")]
    (small, large) = rows[0], rows[-1]
    slope = (large["pipeline_s"] - small["pipeline_s"]) / max(large["direct_s"] - small["direct_s"], 1e-9)
    fixed = small["pipeline_s"] - slope * small["direct_s"]
    summary = {"fixed_overhead_s": fixed, "proportional_overhead": slope - 1.0}
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
               f"torch {torch.__version__}, transformers {transformers.__version__}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps({"machine": machine, "rows": rows, **summary}, indent=1))
    lines = [
        "# B4: cost of orchestration (Prefect flows + MLflow tracking vs direct peft_core calls)", "",
        f"Machine: {machine}. Workload: 2 demo source adapters + ScaLearn + no-transfer adapter on "
        f"demo_lowres, MiniLM, {args.epochs} epochs each, at two training-set sizes; Prefect's temporary API "
        "started before the timings.", "",
        "| examples per task | direct (s) | pipeline (s) | cached re-run (s) | re-run of last stage (s) |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {r['size']} | {r['direct_s']:.1f} | {r['pipeline_s']:.1f} | {r['cached_rerun_s']:.1f} | "
          f"{r['last_stage_rerun_s']:.1f} |" for r in rows],
        "", f"Fixed overhead: {fixed:.1f} s; proportional overhead: {100 * (slope - 1):+.1f} % "
        "(straight line through the two sizes).",
    ]
    (RESULTS / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
