"""Prepared splits on disk: one JSON-lines file per split plus a manifest with the spec and digests,
and an index from a task's *source* (its files' content, declaration and split settings) to the
prepared folder, so re-preparing unchanged files reads nothing but their bytes."""

from __future__ import annotations

import json
from pathlib import Path

from peft_core.checkpoints import atomic_directory_write
from peft_core.data import DatasetSplits, Example
from peft_core.task_specs import TaskSpec

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
SOURCE_INDEX = "by-source"  # <data folder>/by-source/<source key>.json -> the prepared folder's info


def save_splits(folder: Path, splits: DatasetSplits, lines: dict[str, list[str]] | None = None) -> None:
    """`splits` as JSON-lines files; `lines`: their `DatasetSplits.lines()` when already made."""
    lines = lines or splits.lines()

    def write(tmp: Path) -> None:
        for name in SPLITS:
            with open(tmp / f"{name}.jsonl", "w") as f:
                f.writelines(lines[name])
        manifest = {"task": splits.task, "spec": splits.spec.to_json(), "digest": splits.digest(),
                    "digests": splits.digests(), "sizes": {n: len(splits.split(n)) for n in SPLITS}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))

    atomic_directory_write(folder, write)


def load_splits(folder: Path) -> DatasetSplits:
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())

    def read(name: str) -> list[Example]:
        with open(folder / f"{name}.jsonl") as f:
            return [Example.from_json(json.loads(line)) for line in f]

    return DatasetSplits(TaskSpec.from_json(manifest["spec"]), read("train"), read("validation"), read("test"))


def indexed_preparation(data_dir: Path, source_key: str) -> dict | None:
    """The info of a preparation recorded under `source_key`, if its folder is still complete. The
    folder is looked up in `data_dir` by name (entries of older stores record an absolute path, which
    names the old place of a moved or copied home), so the index holds wherever its home is."""
    entry = data_dir / SOURCE_INDEX / f"{source_key}.json"
    if not entry.is_file():
        return None
    info = json.loads(entry.read_text())
    folder = data_dir / Path(info["folder"]).name
    return {**info, "folder": str(folder)} if (folder / MANIFEST).is_file() else None


def index_preparation(data_dir: Path, source_key: str, info: dict) -> None:
    """Record `info` (whose folder is in `data_dir`) under `source_key`, the folder by its name alone."""
    index = data_dir / SOURCE_INDEX
    index.mkdir(parents=True, exist_ok=True)
    tmp = index / f".{source_key}.json.tmp"
    tmp.write_text(json.dumps({**info, "folder": Path(info["folder"]).name}))
    tmp.replace(index / f"{source_key}.json")


def prepared_spec(prepared: dict) -> TaskSpec:
    """The spec a prepared task was read for (its label names those its files hold)."""
    return TaskSpec.from_json(prepared["spec"])
