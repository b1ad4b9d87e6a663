"""Preparing a large user-declared task: time and peak memory (issue #21, item 5).

    .venv/bin/python benchmarks/task_prep_scale.py              # 1,000,000 rows, 3 repeats (about 3 min)
    .venv/bin/python benchmarks/task_prep_scale.py --rows 100000

Writes a CSV with two text fields and a label (three classes), declares it as a task, and runs the
prepare stage's own unit (`prepare_task_data`: read, check every row, split, digest, store) twice,
each in a fresh process whose peak resident memory is read from the OS: once cold, once again on
the unchanged file (served from the index by the file's content digest). Results go to
benchmarks/results/task-prep-scale.md and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.publish import RESULTS, publish_results  # noqa: E402

WORDS = ("the order arrived late and the box was damaged but support answered quickly with a refund offer "
         "my invoice lists a charge twice please check the account settings page crashes when I upload a file").split()
BUDGET_S, BUDGET_GIB = 60, 2.0


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        f.write("title,body,label\n")
        for i in range(rows):
            title = " ".join(rng.choices(WORDS, k=6))
            body = " ".join(rng.choices(WORDS, k=18))
            f.write(f"{title},{body},{('billing', 'bug', 'question')[i % 3]}\n")


def prepare_once(config: Path) -> None:
    """One preparation in this process; prints its seconds and peak RSS as JSON."""
    from flows.config import load_config
    from flows.data_plans import data_recipe
    from tasks.data_units import prepare_task_data

    cfg = load_config(config)
    started = time.perf_counter()
    info = prepare_task_data.fn(data_recipe(cfg, "big", "source"), cfg.home_dir() / "data")
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    print(json.dumps({"seconds": seconds, "peak_gib": peak_gib, "sizes": info.sizes, "digest": info.digest}))


def measure(config: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--prepare", str(config)], capture_output=True, text=True,
                          check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict[str, tuple[float, float, float]]:
    """(median, min, max) of each figure over the runs."""
    return {key: (statistics.median(r[key] for r in runs), min(r[key] for r in runs), max(r[key] for r in runs))
            for key in ("seconds", "peak_gib")}


def _cell(figures: tuple[float, float, float], digits: int) -> str:
    median, low, high = figures
    return f"{median:.{digits}f} ({low:.{digits}f} to {high:.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="cold and warm runs, alternating, each in a new process")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare_once(args.prepare)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_csv(folder / "big.csv", args.rows)
        size_mb = (folder / "big.csv").stat().st_size / 1e6
        colds, warms = [], []
        for repeat in range(args.repeats):  # a new home each time: the cold run finds no earlier preparation
            config = folder / f"big-{repeat}.yaml"
            config.write_text(yaml.safe_dump({
                "name": "prep-scale", "home": str(folder / f"home-{repeat}"), "sources": ["big"], "targets": [],
                "methods": ["adapter"], "tasks": {"big": {"problem": "classification", "text_fields": ["title", "body"],
                                                          "description": "Route a ticket.", "data": {"train": "big.csv"}}}}))
            colds.append(measure(config))
            warms.append(measure(config))
    assert len({run["digest"] for run in colds + warms}) == 1
    cold, warm = (_summary(runs) for runs in (colds, warms))
    verdict = ("within" if cold["seconds"][2] <= BUDGET_S and cold["peak_gib"][2] <= BUDGET_GIB else "OVER")
    lines = [
        "# Preparing a large declared task",
        "",
        f"A {args.rows:,}-row CSV ({size_mb:.0f} MB; two text fields of 6 and 18 words, three labels), declared under "
        "`tasks:` and prepared by the prepare stage's own unit, each run in a fresh process on this machine's 2 cores.",
        "",
        f"| run (median, min to max of {args.repeats}) | seconds | peak memory (GiB) |",
        "|---|---:|---:|",
        f"| cold: read, check every row, split, digest, store | {_cell(cold['seconds'], 1)} | {_cell(cold['peak_gib'], 2)} |",
        f"| again, file unchanged (index by the file's content digest) | {_cell(warm['seconds'], 2)} | "
        f"{_cell(warm['peak_gib'], 2)} |",
        "",
        f"Splits {colds[0]['sizes']} (the seeded rule: 10 % test, then 10 % of the rest validation); the same digest "
        f"{colds[0]['digest']} in every run. Budget {BUDGET_S} s and {BUDGET_GIB:g} GiB for the slowest cold run: "
        f"{verdict}. The warm run's memory is the process's imports (Prefect, pandas, pyarrow); it reads no rows.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/task_prep_scale.py`.",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "task-prep-scale.json").write_text(json.dumps({"rows": args.rows, "cold": colds, "warm": warms}, indent=1))
    print(publish_results("task-prep-scale", lines))


if __name__ == "__main__":
    main()
