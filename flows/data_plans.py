"""The prepare stage's recipes: how each task's splits are made under the config's data settings.
Light (no torch, Prefect or MLflow), so `adapterflow tasks --check` reads data as the pipeline does."""

from __future__ import annotations

from flows.config import PipelineConfig
from tasks.task_data import DataRecipe, KShotDraw, Role


def data_recipe(config: PipelineConfig, task: str, role: Role, seed: int | None = None) -> DataRecipe:
    """How `task`'s splits are made for `role` under the config's data settings: its caps, its split
    convention, and for a target under `data.few_shot` the sample of `seed` (each seed its own)."""
    data = config.data
    cap = data.train_cap(task)
    if role == "target" and data.max_train_targets:
        cap = min(cap or data.max_train_targets, data.max_train_targets)
    shot = data.few_shot if role == "target" else None
    return DataRecipe(config.task_declaration(task), role, data.split, data.seed, cap, data.max_eval,
                      KShotDraw(shot.k, shot.per_label, shot.validation_k) if shot else None,
                      seed if shot else None)


def prepare_plan(config: PipelineConfig) -> list[tuple[int | None, DataRecipe]]:
    """(seed, recipe): every source's splits (seed None; an imported source's only where a method reads
    them), and every target's for each seed (under data.few_shot each seed draws its own sample)."""
    return [(None, data_recipe(config, t, "source")) for t in config.sources if t in config.data_tasks()] + \
        [(s, data_recipe(config, t, "target", s)) for t in config.targets for s in config.seeds]
