"""What a model set answers, named without torch: a target (a fitted folder, or a joint model's
folder and task) and the manifest of a saved set, `targets.json`.

Finding the targets of a unit needs no tensors, so it runs before, or beside, the seconds torch
and transformers take to import; `model_set` loads them.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "targets.json"

Target = Path | str | tuple[Path | str, str]  # a fitted folder, or (joint model folder, task)


def folder_and_task(target: Target) -> tuple[Path, str | None]:
    return (Path(target[0]), target[1]) if isinstance(target, tuple) else (Path(target), None)


def model_set_targets(folder: Path) -> dict[str, Target]:
    """The targets of a folder `save_model_set` wrote, as `FittedModelSet` takes them."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())["targets"]
    return {name: (folder / entry["folder"], entry["task"]) for name, entry in manifest.items()}
