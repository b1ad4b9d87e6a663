"""Many targets, one backbone: rows of mixed targets answered by one process (a `FittedModelSet`)
against one process per target, on MiniLM.

    python benchmarks/mixed_targets.py               # 4 targets, 1,024 rows
    python benchmarks/mixed_targets.py --rows 256    # quicker

Four fitted targets (two demo source adapters, ScaLearn and AdapterFusion over them on the demo
target; a few training steps each: prediction cost does not depend on how well they learnt) get
the same stream of rows, the targets interleaved, cut into requests. *One process* holds one
backbone and all four, grouping each request's rows by target. *One process per target* runs
four processes at once, each with its own backbone and its share of every request. Every process
runs one torch thread, so rows per CPU-second compare the work per row whatever else the machine
runs; wall-clock rows/s also count the cores the per-target processes use side by side. Both are
timed after loading; peak memory is each process's maximum RSS.
Results go to benchmarks/results/mixed_targets.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SOURCES, TARGET = ("demo_sentiment", "demo_nli"), "demo_lowres"
TRANSFER = ("scalearn", "adapterfusion")
REQUEST_SIZES = (64, 0)  # rows per request; 0: the whole stream in one request


def fit_targets(root: Path) -> dict[str, str]:
    """{target name: fitted folder} of the four targets, trained for a few steps on MiniLM."""
    from peft_core.backbones import load_backbone
    from peft_core.configs import AdapterConfig, TrainConfig
    from peft_core.data import load_task_data
    from peft_core.adapter_jobs import train_adapter
    from peft_core.task_specs import get_task
    from peft_core.transfer import fit_transfer

    backbone = load_backbone("minilm")
    quick = TrainConfig(epochs=1, batch_size=16, max_steps=4, max_length=64)
    folders = {}
    for name in SOURCES:
        spec = get_task(name)
        train_adapter(backbone, spec, load_task_data(spec, "demo", max_train=64, max_eval=32), AdapterConfig(),
                      quick, root / name)
        folders[f"{name}/adapter"] = str(root / name)
    target = get_task(TARGET)
    splits = load_task_data(target, "demo", max_train=64, max_eval=32)
    for method in TRANSFER:
        fit_transfer(backbone, target, splits, method, [root / s for s in SOURCES], quick, root / method)
        folders[f"{TARGET}/{method}"] = str(root / method)
    return folders


def row_stream(targets: dict[str, str], rows: int) -> list[dict]:
    """`rows` input rows, round-robin over the targets, each from its task's demo test split."""
    from peft_core.data import load_task_data
    from peft_core.artifact_files import fitted_tasks
    from peft_core.inputs import input_fields
    from peft_core.task_specs import get_task

    pools = []
    for name, folder in targets.items():
        spec = get_task(fitted_tasks(folder)[0])
        test = load_task_data(spec, "demo").test
        pools.append([{"model": name, **dict(zip(input_fields(spec), ex.texts))} for ex in test])
    return [pools[i % len(pools)][i // len(pools) % len(pools[i % len(pools)])] for i in range(rows)]


def requests_of(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows] if size == 0 else [rows[i:i + size] for i in range(0, len(rows), size)]


def serve_worker(spec: dict) -> dict:
    """One process: load `targets` on one backbone, answer `rows` request by request; timings and peak RSS."""
    import torch

    from peft_core.model_set import FittedModelSet

    torch.set_num_threads(1)
    started = time.perf_counter()
    models = FittedModelSet(spec["targets"])
    loaded, cpu = time.perf_counter(), _cpu_seconds()
    for request in requests_of(spec["rows"], spec["request_size"]):
        models.predict(request)
    done = time.perf_counter()
    models.close()
    return {"load_s": loaded - started, "predict_s": done - loaded, "cpu_s": _cpu_seconds() - cpu,
            "rows": len(spec["rows"]), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_workers(specs: list[dict], work: Path) -> list[dict]:
    """Run one worker process per spec, all at once; their results in order."""
    processes = []
    for i, spec in enumerate(specs):
        path = work / f"worker-{i}.json"
        path.write_text(json.dumps(spec))
        processes.append(subprocess.Popen([sys.executable, __file__, "--worker", str(path)], stdout=subprocess.PIPE))
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a worker failed (exit {process.returncode})")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def measure(targets: dict[str, str], rows: list[dict], request_size: int, work: Path) -> dict:
    one, = run_workers([{"targets": targets, "rows": rows, "request_size": request_size}], work)
    per_target_size = request_size // len(targets) if request_size else 0
    specs = [{"targets": {name: folder}, "rows": [r for r in rows if r["model"] == name],
              "request_size": per_target_size} for name, folder in targets.items()]
    each = run_workers(specs, work)
    return {
        "request_size": request_size or len(rows),
        "one_process": {"rows_per_s": len(rows) / one["predict_s"], "rows_per_cpu_s": len(rows) / one["cpu_s"],
                        "load_s": one["load_s"], "peak_rss_mb": one["peak_rss_mb"]},
        "process_per_target": {"rows_per_s": len(rows) / max(r["predict_s"] for r in each),
                               "rows_per_cpu_s": len(rows) / sum(r["cpu_s"] for r in each),
                               "load_s": max(r["load_s"] for r in each),
                               "peak_rss_mb": sum(r["peak_rss_mb"] for r in each)},
    }


def write_results(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mixed_targets.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Many targets, one backbone (`benchmarks/mixed_targets.py`)", "",
        f"{len(results['targets'])} targets ({', '.join(results['targets'])}) on MiniLM, {results['rows']} rows with "
        f"the targets interleaved, {results['machine']} (load average {results['load_average']:.1f} at the start), "
        f"precision {results['precision']}, one torch thread per process.", "",
        "| rows per request | approach | rows per CPU-second | rows/s (wall) | load s | peak MB (sum) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        for label, key in (("one process, one backbone", "one_process"), ("one process per target", "process_per_target")):
            m = r[key]
            lines.append(f"| {r['request_size']} | {label} | {m['rows_per_cpu_s']:.0f} | {m['rows_per_s']:.0f} "
                         f"| {m['load_s']:.1f} | {m['peak_rss_mb']:.0f} |")
    (RESULTS / "mixed_targets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(serve_worker(json.loads(args.worker.read_text()))))
        return
    from peft_core.precision import resolve_precision

    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        targets = fit_targets(work)
        rows = row_stream(targets, args.rows)
        runs = [measure(targets, rows, size, work) for size in REQUEST_SIZES]
    write_results({"targets": list(targets), "rows": args.rows, "runs": runs, "precision": resolve_precision("auto"),
                   "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})",
                   "load_average": load_average})


if __name__ == "__main__":
    main()
