"""What a task is: its inputs, labels, metrics and description (`TaskSpec`), and where its rows
come from (`TaskDeclaration`, which adds the data).

A `TaskSpec` is the one description of a task that loaders, heads, trainers, artifacts and reports
share. Tasks are data: the built-in GLUE, SuperGLUE and demo tasks are declarations in
`builtin_tasks.yaml`, read with the same rules as the tasks a user declares in a config
(`tasks:` there). A declaration may leave `label_names` out; the loader then takes the sorted
values found in train (`TaskDeclaration.resolve`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from peft_core.errors import ConfigError, DataError, UnknownTaskError

Problem = Literal["classification", "regression", "multiple_choice"]
Source = Literal["demo", "hub", "local"]  # where built-in tasks' rows come from (`data.source`)
PROBLEMS: tuple[str, ...] = ("classification", "regression", "multiple_choice")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DECLARED = "declared"  # the benchmark of a task declared in a config

# Keys of the dict that `peft_core.metrics.compute_metrics` returns.
METRIC_NAMES = ("accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman")
_REGRESSION_METRICS = {"pearson", "spearman"}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("pearson", "spearman"),
    "multiple_choice": ("accuracy",),
}
BUILTIN_FILE = Path(__file__).with_name("builtin_tasks.yaml")


@dataclass(frozen=True)
class TaskSpec:
    """One task. `text_fields`/`choice_fields` name the model's inputs (the columns `predict` reads).

    `label_names` is None for regression; for classification and multiple choice its order
    defines the label indices. The main metric, used for early stopping and model selection, is
    the first of `metrics`.
    """

    name: str
    benchmark: str
    problem: Problem
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    description: str
    choice_fields: tuple[str, ...] = ()
    label_field: str = "label"  # the column a labelled file (`predict --metrics`) holds the answers in

    def __post_init__(self) -> None:
        problems = spec_problems(self.name, self.problem, self.text_fields, self.choice_fields, self.metrics,
                                 self.label_names, resolved=True)
        if problems:
            raise ConfigError(f"task {self.name!r} is invalid: {'; '.join(problems)}")

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        """Outputs of the task head: 1 for regression, else one per class or choice."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.problem == "regression"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: dict) -> TaskSpec:
        """A spec as `to_json` (or an older artifact's record, with keys since dropped) wrote it."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in known})

    def identity(self) -> dict:
        """What a model trained on this task depends on (part of the data digest): everything but
        the description, which only PEMT's prompts read (their units key it themselves), and where
        files keep things (the examples carry the labels themselves)."""
        return {k: v for k, v in self.to_json().items() if k not in ("description", "benchmark", "label_field")}


def spec_problems(name: str, problem: str, text_fields, choice_fields, metrics, label_names,
                  *, resolved: bool) -> list[str]:
    """What is wrong with a task's fields, each naming the field (empty when nothing is)."""
    problems = []
    regression = problem == "regression"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        problems.append("its name must be lowercase letters, digits and underscores, starting with a letter")
    if problem not in PROBLEMS:
        problems.append(f"problem {problem!r} is not one of {', '.join(PROBLEMS)}")
    if not text_fields:
        problems.append("text_fields is empty; list the columns fed to the model")
    if label_names is not None and regression:
        problems.append("label_names is for classification and multiple choice, not regression; remove it")
    if label_names is None and not regression and resolved:
        problems.append("label_names is missing")
    if label_names is not None and len(set(label_names)) != len(label_names):
        problems.append(f"label_names {list(label_names)} repeats a name")
    if label_names is not None and len(label_names) < 2:
        problems.append("label_names needs at least two labels")
    if problem == "multiple_choice":
        if not choice_fields:
            problems.append("a multiple_choice task needs choice_fields (the columns of its choices, like "
                            "COPA's [choice1, choice2])")
        elif label_names is not None and len(choice_fields) != len(label_names):
            problems.append("a multiple_choice task needs one label name per choice field")
    elif choice_fields:
        problems.append("choice_fields is only for multiple_choice tasks")
    if metrics is not None:
        problems += _metric_problems(tuple(metrics), problem, label_names)
    return problems


def _metric_problems(metrics: tuple[str, ...], problem: str, label_names) -> list[str]:
    if not metrics:
        return ["metrics is empty; leave it out for the default or list some"]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        return [f"unknown metrics {unknown} (known: {', '.join(METRIC_NAMES)})"]
    mismatched = [m for m in metrics if (m in _REGRESSION_METRICS) != (problem == "regression")]
    if mismatched:
        return [f"metrics {mismatched} do not fit a {problem} task"]
    if "f1" in metrics and label_names is not None and len(label_names) != 2:
        return ["'f1' is binary F1 of label 1; use 'macro_f1' for more than two labels"]
    return []


@dataclass(frozen=True)
class TaskData:
    """Where a task's rows come from, and how to read its files.

    - files per split: `train`, `validation`, `test` (each one or more files, pooled in order);
    - or one pool `all`, assigned to splits by the value of `split_column` (`split_values` maps a
      split to its value; default the split's own name), or without it by the seeded rule;
    - or a Hugging Face dataset `hub` (+ `hub_config`) from the local cache, `hub_splits` mapping
      our splits to its split names;
    - or the built-in demo `generator`.
    A split left out is drawn by a seeded rule (`peft_core.data.splits`). Files: .csv .tsv .jsonl
    .json .parquet, or a folder `datasets.save_to_disk` wrote. `columns` renames a file's columns
    to the task's fields; `header` names the columns of a file without a header line; `quoting`
    false reads .csv/.tsv with quotes as plain characters (GLUE's TSV files).
    """

    train: tuple[str, ...] = ()
    validation: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    split_column: str | None = None
    split_values: dict[str, str] = field(default_factory=dict)
    hub: str | None = None
    hub_config: str | None = None
    hub_splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    header: tuple[str, ...] | None = None
    quoting: bool = True
    generator: str | None = None

    def files(self) -> dict[str, tuple[str, ...]]:
        """{split or "all": its files}, for the splits that name files."""
        return {name: getattr(self, name) for name in (*SPLITS, "all") if getattr(self, name)}

    def with_root(self, root: Path) -> TaskData:
        """The same data with relative file paths made absolute under `root`."""
        def absolute(paths: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(str(root / p) if not Path(p).expanduser().is_absolute() else str(Path(p).expanduser())
                         for p in paths)

        return dataclasses.replace(self, **{name: absolute(paths) for name, paths in self.files().items()})

    def origins(self) -> list[str]:
        """The kinds of source this data names: "files", "hub", "generator"."""
        return [kind for kind, given in (("files", self.files()), ("hub", self.hub), ("generator", self.generator))
                if given]


@dataclass(frozen=True)
class TaskDeclaration:
    """A task as declared: a spec whose `label_names` may still be open, and its data."""

    name: str
    problem: Problem
    text_fields: tuple[str, ...]
    data: TaskData
    label_field: str = "label"
    label_names: tuple[str, ...] | None = None
    choice_fields: tuple[str, ...] = ()
    metrics: tuple[str, ...] | None = None
    description: str = ""
    benchmark: str = DECLARED

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(f"task {self.name!r} is invalid: {'; '.join(problems)}")

    def problems(self) -> list[str]:
        return spec_problems(self.name, self.problem, self.text_fields, self.choice_fields, self.metrics,
                             self.label_names, resolved=False)

    @property
    def is_regression(self) -> bool:
        return self.problem == "regression"

    @property
    def resolved_metrics(self) -> tuple[str, ...]:
        return self.metrics or DEFAULT_METRICS[self.problem]

    @property
    def main_metric(self) -> str:
        return self.resolved_metrics[0]

    @property
    def input_fields(self) -> tuple[str, ...]:
        return (*self.text_fields, *self.choice_fields)

    def resolve(self, label_names: tuple[str, ...] | None = None) -> TaskSpec:
        """The spec, with `label_names` (found in the data) where the declaration leaves them open."""
        return TaskSpec(self.name, self.benchmark, self.problem, self.text_fields,
                        self.label_names if self.label_names is not None or self.is_regression else label_names,
                        self.resolved_metrics, self.description, self.choice_fields, self.label_field)

    def with_data(self, data: TaskData) -> TaskDeclaration:
        return dataclasses.replace(self, data=data)


def _lookup_key(name: str) -> str:
    """'SST-2', 'sst_2' and 'Sst2' all become 'sst2'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def declaration_from_dict(name: str, fields: dict, benchmark: str = DECLARED) -> TaskDeclaration:
    """A declaration from plain data (YAML/JSON): lists become tuples, one path becomes a tuple."""
    data = dict(fields.get("data") or {})
    for key in (*SPLITS, "all"):
        if isinstance(data.get(key), str):
            data[key] = (data[key],)
    if "hub_splits" in data:
        data["hub_splits"] = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in data["hub_splits"].items()}
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    rest = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k != "data"}
    return TaskDeclaration(name=name, data=TaskData(**data), benchmark=benchmark, **rest)


@cache
def builtin_declarations() -> dict[str, TaskDeclaration]:
    """The shipped declarations (GLUE, SuperGLUE, demo), by name, in file order."""
    catalog = yaml.safe_load(BUILTIN_FILE.read_text())
    return {name: declaration_from_dict(name, fields, benchmark)
            for benchmark, tasks in catalog.items() for name, fields in tasks.items()}


def builtin_name(name: str) -> str | None:
    """The built-in task `name` means, ignoring case and punctuation ('SST-2', 'superglue-rte'), or None."""
    by_key = {_lookup_key(n): n for n in builtin_declarations()}
    return by_key.get(_lookup_key(name))


def builtin_declaration(name: str) -> TaskDeclaration:
    found = builtin_name(name)
    if found is None:
        valid = ", ".join(sorted(builtin_declarations()))
        raise UnknownTaskError(f"unknown task {name!r}; use one of: {valid}, or declare it under `tasks:` in the config")
    return builtin_declarations()[found]


def declaration_for_source(task: TaskDeclaration | TaskSpec | str, source: Source,
                           data_dir: Path | str | None = None) -> TaskDeclaration:
    """A built-in task's declaration narrowed to one origin: its files under `data_dir` ("local"),
    its Hugging Face dataset ("hub") or the demo generator ("demo")."""
    declaration = builtin_declaration(task if isinstance(task, str) else task.name)
    data = declaration.data
    if source == "local":
        if data_dir is None:
            raise DataError(f"task {declaration.name}: source 'local' needs a data folder; pass its path")
        narrowed = dataclasses.replace(data, hub=None, hub_config=None, hub_splits={}, generator=None)
        narrowed = narrowed.with_root(Path(data_dir))
    elif source == "hub":
        narrowed = TaskData(hub=data.hub, hub_config=data.hub_config, hub_splits=data.hub_splits)
    elif source == "demo":
        narrowed = TaskData(generator=data.generator)
    else:
        raise DataError(f"unknown data source {source!r}; use 'demo', 'hub' or 'local'")
    if not narrowed.origins():
        raise DataError(f"task {declaration.name} has no {source} data; use data.source "
                        f"{' or '.join(repr(s) for s in _sources_of(data))} for it, or point it at files "
                        f"(tasks: {{{declaration.name}: {{data: ...}}}} in the config)")
    return declaration.with_data(narrowed)


def _sources_of(data: TaskData) -> list[str]:
    return [source for source, given in (("local", data.files()), ("hub", data.hub), ("demo", data.generator))
            if given]


def get_task(name: str) -> TaskSpec:
    """The spec of a built-in task, ignoring case and punctuation ('SST-2', 'STS-B', 'superglue-rte')."""
    return builtin_declaration(name).resolve()


def list_tasks(benchmark: str | None = None) -> list[TaskSpec]:
    """The built-in specs (of one benchmark if given), in catalog order."""
    return [d.resolve() for d in builtin_declarations().values() if benchmark is None or d.benchmark == benchmark]
