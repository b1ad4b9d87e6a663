"""Prepared splits on disk: one JSON-lines file per split plus a manifest with digests."""

from __future__ import annotations

import json
from pathlib import Path

from peft_core.checkpoints import atomic_directory_write
from peft_core.data import DatasetSplits, Example

SPLITS = ("train", "validation", "test")


def save_splits(folder: Path, splits: DatasetSplits) -> None:
    def write(tmp: Path) -> None:
        for name in SPLITS:
            with open(tmp / f"{name}.jsonl", "w") as f:
                for ex in splits.split(name):
                    f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
        manifest = {"task": splits.task, "digest": splits.digest(), "digests": splits.digests(),
                    "sizes": {n: len(splits.split(n)) for n in SPLITS}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))

    atomic_directory_write(folder, write)


def load_splits(folder: Path) -> DatasetSplits:
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())

    def read(name: str) -> list[Example]:
        with open(folder / f"{name}.jsonl") as f:
            return [Example.from_json(json.loads(line)) for line in f]

    return DatasetSplits(manifest["task"], read("train"), read("validation"), read("test"))
