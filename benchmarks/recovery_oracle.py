"""B1's recovery check, taken apart: how much of the gap to the target's own full-data adapter is
the new head's, and how much is ScaLearn's weights'? The oracle weighting with a new head.

    .venv/bin/python benchmarks/recovery_oracle.py              # MRPC and STS-B, k = 32, seeds 1-3
    .venv/bin/python benchmarks/recovery_oracle.py --targets stsb --seeds 1

For each target, k-shot sample and seed of `configs/glue-lowres.yaml` it fits, with the fit settings
of the profile (its step budget, ScaLearn's rate), the target's own full-data source adapter alone (ω
one-hot on it: `average` over that one source) with a *new* head trained on the k examples: what a
perfect weighting of the sources reaches with a new head. The recovery check's ScaLearn fits (new
head, and head from the own adapter) are in `glue-lowres-cpu*.md`. Sources: the committed
`benchmarks/sources/glue-lowres/` units (no MLflow needed). Writes `results/recovery-oracle.{md,json}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchmarks.publish import RESULTS  # noqa: E402
from flows.config import load_config  # noqa: E402

SOURCES = REPO / "benchmarks" / "sources" / "glue-lowres" / "units"


def source_folders() -> dict[str, Path]:
    """Task -> adapter folder of the plain (prompt-less) source adapters among the committed units."""
    folders = {}
    for unit in sorted(SOURCES.iterdir()):
        info = json.loads((unit / "unit.json").read_text())
        config = json.loads((unit / "adapter" / "adapter_config.json").read_text())
        if info["tags"]["stage"] == "sources" and config["method"] == "adapter":
            folders[info["tags"]["task"]] = unit / "adapter"
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="mrpc,stsb")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--data-dir", help="GLUE folder (default: the config's, ../shared/data/glue)")
    args = parser.parse_args(argv)

    from peft_core.backbones import load_backbone
    from peft_core.task_specs import get_task
    from peft_core.transfer import fit_transfer
    from flows.data_plans import data_recipe
    from flows.unit_plans import fit_train_config

    overrides = {"data.path": args.data_dir} if args.data_dir else {}
    cfg = load_config(REPO / "configs" / "glue-lowres.yaml", **{"data.few_shot.k": 32, **overrides})
    folders = source_folders()
    backbone = load_backbone(cfg.backbone)
    work = REPO / ".adapterflow" / "work" / "recovery-oracle"
    rows = []
    for target in args.targets.split(","):
        spec = get_task(target)
        for seed in map(int, args.seeds.split(",")):
            splits = data_recipe(cfg, target, "target", seed).splits()  # the sample the pipeline's fits of `seed` get
            # ScaLearn's fit settings, its rate as a number: "published" would give the average's rate
            train = fit_train_config(cfg, "scalearn", seed, len(splits.train))
            started = time.perf_counter()
            result = fit_transfer(backbone, spec, splits, "average", [folders[target]], train,
                                  work / f"{target}-{seed}-oracle", learning_rate=train.learning_rate)
            rows.append({"target": target, "seed": seed, "fit": "oracle (own full-data adapter, new head)",
                         "metric": spec.main_metric, "test": result.metrics[f"test_{spec.main_metric}"],
                         "seconds": time.perf_counter() - started})
            print(json.dumps(rows[-1]), flush=True)
    (RESULTS / "recovery-oracle.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Recovery check taken apart (k = 32)", "",
             f"Written by `benchmarks/recovery_oracle.py --targets {args.targets} --seeds {args.seeds}`; "
             f"every fit {train.max_steps} steps at batch {train.batch_size}, rate {train.learning_rate}, test = the whole "
             "original dev set.", "",
             "| target | fit | test ×100 per seed | mean |", "|---|---|---|---|"]
    for (target, name) in dict.fromkeys((r["target"], r["fit"]) for r in rows):
        scores = [r["test"] * 100 for r in rows if (r["target"], r["fit"]) == (target, name)]
        lines.append(f"| {target} | {name} | {', '.join(f'{s:.1f}' for s in scores)} | {statistics.mean(scores):.1f} |")
    (RESULTS / "recovery-oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
