"""The pipeline's stages, in order: the one table the CLI, the config (`force_stages`), the stage
flows, the deployments and the report read.

A unit run's MLflow tag `stage` is its stage's name, except a joint model's own run, tagged
`JOINT_MODEL_TAG` (its per-task report rows carry `multitask`). A joint model is a unit of the
multitask stage wherever it trains (HyperFormer few-shot transfer trains one in the transfer flow):
`--force-stage multitask` retrains it.
"""

from __future__ import annotations

from dataclasses import dataclass

JOINT_MODEL_TAG = "multitask-joint"


@dataclass(frozen=True)
class Stage:
    name: str
    description: str  # the stage flow's deployment description
    has_units: bool  # units that are looked up by key before training: `--force-stage NAME` retrains them
    reported: bool  # its unit runs are rows of the comparison report
    run_tags: tuple[str, ...] = ()  # MLflow `stage` tags of its unit runs besides its name


PIPELINE = Stage("pipeline", "prepare -> sources -> transfer -> multitask -> evaluate for a config file; returns "
                             "the MLflow parent run id.", has_units=False, reported=False)
STAGES: tuple[Stage, ...] = (
    Stage("prepare", "Prepare (and cache) the data splits of a config file's sources and targets.",
          has_units=False, reported=False),
    Stage("sources", "Train the source adapters of a config file (finished ones are reused from MLflow).",
          has_units=True, reported=True),
    Stage("transfer", "Fit every (target, method) of a config file on the source adapters already trained.",
          has_units=True, reported=True),
    Stage("multitask", "Train the joint multi-task models (HyperFormer, shared adapter, full multi-task) of a "
                       "config file.", has_units=True, reported=True, run_tags=(JOINT_MODEL_TAG,)),
    Stage("evaluate", "Re-evaluate a config file's saved source adapters from their artifacts.",
          has_units=True, reported=False),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
RUNNABLE: tuple[str, ...] = (PIPELINE.name, *STAGE_NAMES)  # `adapterflow run --stage`, one deployment each
FORCEABLE_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.has_units)
REPORTED_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.reported)


def get_stage(name: str) -> Stage:
    for stage in (PIPELINE, *STAGES):
        if stage.name == name:
            return stage
    raise KeyError(name)


def stage_of_tag(tag: str) -> str:
    """The stage a unit run's `stage` tag belongs to (what `--force-stage` names)."""
    for stage in STAGES:
        if tag == stage.name or tag in stage.run_tags:
            return stage.name
    raise KeyError(f"no stage has unit runs tagged {tag!r}")
