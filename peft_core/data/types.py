"""Plain containers for task data: what every loader returns and every trainer consumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from peft_core.task_specs import TaskSpec

SPLIT_NAMES = ("train", "validation", "test")


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


def example_lines(examples: list[Example]) -> list[str]:
    """Examples as JSON lines: the prepared files' content, and what their digest is taken over."""
    return [json.dumps(ex.to_json(), ensure_ascii=False) + "\n" for ex in examples]


def digest_lines(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
    return h.hexdigest()[:16]


def digest_examples(examples: list[Example]) -> str:
    """Content digest of a split: changes whenever any text, label or the order changes."""
    return digest_lines(example_lines(examples))


@dataclass
class DatasetSplits:
    """The train / validation / test examples of one task after a split convention was applied,
    with the spec they were read for (its label names give the labels' indices meaning)."""

    spec: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example] = field(default_factory=list)
    # the splits' digests once taken (splits are not changed after they are made)
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def task(self) -> str:
        return self.spec.name

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def digests(self) -> dict[str, str]:
        if not self._digests:
            self._digests = {name: digest_examples(self.split(name)) for name in SPLIT_NAMES}
        return dict(self._digests)

    def lines(self) -> dict[str, list[str]]:
        """Every split as JSON lines (`example_lines`), its digest taken from them on the way, so a
        split is serialised once to be both stored and digested."""
        lines = {name: example_lines(self.split(name)) for name in SPLIT_NAMES}
        self._digests = {name: digest_lines(split_lines) for name, split_lines in lines.items()}
        return lines

    def digest(self) -> str:
        """One digest of the three splits and the spec they were read for (used in cache keys and
        adapter lineage): editing a label name changes it, moving a file does not."""
        payload = {"spec": self.spec.identity(), "splits": self.digests()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
