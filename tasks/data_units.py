"""Prefect task: make a task's splits as its recipe says and store them (keyed by their content
digest, the spec included)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common import unit_logger
from tasks.prepared_data import SPLITS, index_preparation, indexed_preparation, save_splits
from tasks.task_data import DataRecipe
from tasks.unit_specs import PreparedData


def _prepare_run_name(parameters: dict) -> str:
    recipe = parameters["recipe"]
    seed = f" seed {recipe.seed}" if recipe.seed is not None else ""
    return f"prepare_task_data {recipe.task} ({recipe.role}){seed}"


@task(name="prepare_task_data", cache_policy=NO_CACHE, task_run_name=_prepare_run_name)
def prepare_task_data(recipe: DataRecipe, data_dir: Path) -> PreparedData:
    """The recipe's splits stored in `data_dir` as a folder keyed by their content digest; files
    prepared before with the same content and recipe are not read again."""
    key = recipe.source_key()
    info = indexed_preparation(data_dir, key) if key else None
    if info is None:
        splits = recipe.splits()
        lines = splits.lines()  # serialised once, for the digest and the files
        digest = splits.digest()
        folder = data_dir / f"{recipe.task}-{digest}"
        if not (folder / "manifest.json").exists():
            save_splits(folder, splits, lines)
        info = {"task": recipe.task, "folder": str(folder), "digest": digest, "spec": splits.spec.to_json(),
                "sizes": {n: len(splits.split(n)) for n in SPLITS}}
        if key:
            index_preparation(data_dir, key, info)
    seed = f", seed {recipe.seed}" if recipe.seed is not None else ""
    unit_logger().info("prepared %s (%s%s): %s, digest %s", recipe.task, recipe.role, seed, info["sizes"], info["digest"])
    return PreparedData(task=recipe.task, folder=info["folder"], digest=info["digest"], spec=info["spec"],
                        sizes=info["sizes"], role=recipe.role, seed=recipe.seed)
