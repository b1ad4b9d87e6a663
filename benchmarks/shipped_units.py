"""The one-time units of B1 that ship in `benchmarks/sources/glue-lowres/`, so a new user skips them.

    .venv/bin/python benchmarks/shipped_units.py --check            # does the shipped export hold them?
    .venv/bin/python benchmarks/shipped_units.py --export [--home H] # re-export them from a store

B1's one-time units are the eight source adapters, the eight prompt adapters PEMT combines and the
joint HyperFormer++ its few-shot fits adapt. `expected_units` computes their keys with today's code
(the keys the pipeline looks up); `--export` writes exactly those units from a store that holds them
(refusing when one is missing, so a stale store cannot be shipped), and
tests/benchmarks/test_shipped_units.py fails when the shipped keys differ from today's: a change
that bumps a compute version must re-export in the same change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.config import PipelineConfig, load_config  # noqa: E402
from flows.store import tracking_for  # noqa: E402

CONFIG = REPO / "configs" / "glue-lowres.yaml"
SHIPPED = REPO / "benchmarks" / "sources" / "glue-lowres"


def expected_units(cfg: PipelineConfig) -> dict[str, str]:
    """{unit key: what it is} of every unit the config trains once for all its targets and seeds."""
    from flows.unit_plans import joint_model, sources_plan
    from peft_core.method_names import HYPERFORMER_TRANSFER_METHODS, JOINT_MODEL_OF
    from flows.data_plans import data_recipe
    from tasks.unit_specs import PreparedData

    prepared = {}
    for name in cfg.sources:
        splits = data_recipe(cfg, name, "source").splits()
        prepared[name] = PreparedData(name, folder="", digest=splits.digest(), spec=splits.spec.to_json(),
                                      sizes={n: len(splits.split(n)) for n in ("train", "validation", "test")},
                                      role="source")
    units = {spec.key: f"sources/{spec.task}/{spec.method} (seed {spec.seed})"
             for spec in sources_plan(cfg, {"source": prepared})}
    joint_data = {t: prepared[t] for t in cfg.hyperformer_transfer_tasks()}
    for method in cfg.methods_in(HYPERFORMER_TRANSFER_METHODS):
        for seed in cfg.source_seed_list():
            units[joint_model(cfg, joint_data, JOINT_MODEL_OF[method], seed).key] = \
                f"joint {JOINT_MODEL_OF[method]} over {', '.join(joint_data)} (seed {seed})"
    return units


def shipped_keys(folder: Path = SHIPPED) -> list[str]:
    return json.loads((folder / "manifest.json").read_text())["units"]


def export(cfg: PipelineConfig, destination: Path) -> list[str]:
    """Write exactly the config's one-time units from its store to `destination` (replacing an earlier
    export); refuses, naming the unit, when the store lacks one."""
    from tasks.exchange import export_units

    return export_units(tracking_for(cfg), destination, cfg.home_dir(), overwrite=True,
                        keys=list(expected_units(cfg)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the shipped keys with today's")
    parser.add_argument("--export", action="store_true", help=f"re-export the units to {SHIPPED.relative_to(REPO)}, "
                        "then check them")
    parser.add_argument("--home", help="the store to export from (default: the config's home)")
    args = parser.parse_args(argv)
    if not (args.check or args.export):
        parser.error("pass --check, --export, or both (an export is checked after it is written)")
    cfg = load_config(CONFIG, **({"home": args.home} if args.home else {}))
    if args.export:
        keys = export(cfg, SHIPPED)
        print(f"exported {len(keys)} unit(s) to {SHIPPED}")
    expected, shipped = expected_units(cfg), set(shipped_keys())
    stale = sorted(shipped - set(expected))
    absent = sorted(set(expected) - shipped)
    for key in absent:
        print(f"not shipped: {expected[key]} ({key})")
    for key in stale:
        print(f"shipped but not a unit of today's code: {key}")
    if stale or absent:
        raise SystemExit(1)
    print(f"the {len(expected)} shipped units are those today's code computes")


if __name__ == "__main__":
    main()
