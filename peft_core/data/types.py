"""Plain containers for task data: what every loader returns and every trainer consumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from peft_core.task_specs import TaskSpec


@dataclass(frozen=True)
class Example:
    """One labelled example.

    `texts` holds the task's input fields in `TaskSpec.text_fields` order. Multiple-choice tasks
    (COPA) also carry `choices`; their label is the index of the right choice. Regression labels
    are floats, classification labels are indices into `TaskSpec.label_names`.
    """

    texts: tuple[str, ...]
    label: int | float
    choices: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"texts": list(self.texts), "label": self.label, "choices": list(self.choices)}

    @classmethod
    def from_json(cls, row: dict) -> "Example":
        return cls(tuple(row["texts"]), row["label"], tuple(row.get("choices", ())))


def digest_examples(examples: list[Example]) -> str:
    """Content digest of a split: changes whenever any text, label or the order changes."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_json(), ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@dataclass
class DatasetSplits:
    """The train / validation / test examples of one task after a split convention was applied,
    with the spec they were read for (its label names give the labels' indices meaning)."""

    spec: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.spec.name

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def digests(self) -> dict[str, str]:
        return {name: digest_examples(self.split(name)) for name in ("train", "validation", "test")}

    def digest(self) -> str:
        """One digest of the three splits and the spec they were read for (used in cache keys and
        adapter lineage): editing a label name changes it, moving a file does not."""
        payload = {"spec": self.spec.identity(), "splits": self.digests()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
