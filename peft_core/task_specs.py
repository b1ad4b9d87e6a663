"""The registry of NLP tasks: what each task's inputs, labels and metrics are.

A `TaskSpec` is the one description of a task that loaders, heads, trainers and reports share.
Built-in specs cover GLUE, SuperGLUE and the generated demo suite (`peft_core.data.demo`);
users add their own with `register_task`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from peft_core.errors import ConfigError, UnknownTaskError

Problem = Literal["classification", "regression", "multiple_choice"]
Benchmark = Literal["glue", "superglue", "demo"]

# Keys of the dict that `peft_core.metrics.compute_metrics` returns.
METRIC_NAMES = ("accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman")
_REGRESSION_METRICS = {"pearson", "spearman"}


@dataclass(frozen=True)
class TaskSpec:
    """One task. Field names in `text_fields`/`choice_fields` are the Hugging Face column names.

    `label_names` is None for regression; for classification and multiple choice its order
    defines the label indices (the same order as the Hugging Face `ClassLabel`).
    The main metric, used for early stopping and model selection, is the first of `metrics`.
    """

    name: str
    benchmark: Benchmark
    problem: Problem
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    description: str
    hub: tuple[str, str | None] | None = None
    choice_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = _spec_problems(self)
        if problems:
            raise ConfigError(f"task spec {self.name!r} is invalid: {'; '.join(problems)}; fix the TaskSpec")

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


def _spec_problems(spec: TaskSpec) -> list[str]:
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        problems.append("name must be lowercase letters, digits and underscores")
    if not spec.text_fields:
        problems.append("text_fields is empty")
    if (spec.label_names is None) != spec.is_regression:
        problems.append("label_names must be None exactly when problem is 'regression'")
    if spec.label_names is not None and len(spec.label_names) < 2:
        problems.append("label_names needs at least two labels")
    if spec.problem == "multiple_choice" and len(spec.choice_fields) != len(spec.label_names or ()):
        problems.append("a multiple-choice task needs one label name per choice field")
    if spec.problem != "multiple_choice" and spec.choice_fields:
        problems.append("choice_fields is only for multiple-choice tasks")
    if not spec.metrics:
        problems.append("metrics is empty")
    unknown = [m for m in spec.metrics if m not in METRIC_NAMES]
    if unknown:
        problems.append(f"unknown metrics {unknown} (known: {', '.join(METRIC_NAMES)})")
    mismatched = [m for m in spec.metrics if (m in _REGRESSION_METRICS) != spec.is_regression]
    if mismatched and not unknown:
        problems.append(f"metrics {mismatched} do not fit a {spec.problem} task")
    if "f1" in spec.metrics and spec.num_labels != 2:
        problems.append("'f1' is binary F1 of label 1; use 'macro_f1' for more than two labels")
    return problems


def _glue(name, text_fields, label_names, metrics, description, problem="classification"):
    return TaskSpec(name, "glue", problem, text_fields, label_names, metrics, description,
                    hub=("nyu-mll/glue", name))


def _superglue(name, text_fields, label_names, metrics, description, problem="classification",
               choice_fields=(), hub_config=None):
    return TaskSpec(name, "superglue", problem, text_fields, label_names, metrics, description,
                    hub=("aps/super_glue", hub_config or name), choice_fields=choice_fields)


def _demo(name, problem, text_fields, label_names, metrics, description):
    return TaskSpec(name, "demo", problem, text_fields, label_names, metrics, description)


_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")

BUILTIN_TASKS: tuple[TaskSpec, ...] = (
    _glue("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews",),
          "Decide whether an English sentence is grammatically acceptable."),
    _glue("sst2", ("sentence",), ("negative", "positive"), ("accuracy",),
          "Classify the sentiment of a movie review sentence as positive or negative."),
    _glue("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"),
          "Decide whether two sentences from news articles are paraphrases of each other."),
    _glue("stsb", ("sentence1", "sentence2"), None, ("pearson", "spearman"),
          "Rate how similar in meaning two sentences are on a scale from zero to five.",
          problem="regression"),
    _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"),
          "Decide whether two questions from a question answering forum ask the same thing."),
    _glue("mnli", ("premise", "hypothesis"), _NLI3, ("accuracy",),
          "Decide whether a premise entails, contradicts or is neutral towards a hypothesis."),
    _glue("qnli", ("question", "sentence"), _NLI2, ("accuracy",),
          "Decide whether a sentence contains the answer to a question."),
    _glue("rte", ("sentence1", "sentence2"), _NLI2, ("accuracy",),
          "Decide whether the first text entails the second sentence."),
    _glue("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",),
          "Decide whether a sentence with a pronoun replaced by a noun follows from the original."),
    _superglue("boolq", ("question", "passage"), ("False", "True"), ("accuracy",),
               "Answer a yes or no question about a short passage."),
    _superglue("cb", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"),
               ("accuracy", "macro_f1"),
               "Decide whether a short text commits its author to the truth of an embedded clause."),
    _superglue("copa", ("premise", "question"), ("choice1", "choice2"), ("accuracy",),
               "Choose which of two alternatives is the more plausible cause or effect of a premise.",
               problem="multiple_choice", choice_fields=("choice1", "choice2")),
    _superglue("wic", ("word", "sentence1", "sentence2"), ("False", "True"), ("accuracy",),
               "Decide whether a word is used with the same meaning in two sentences."),
    _superglue("superglue_rte", ("premise", "hypothesis"), _NLI2, ("accuracy",),
               "Decide whether a premise entails a hypothesis.", hub_config="rte"),
    _demo("demo_sentiment", "classification", ("sentence",), ("negative", "positive"), ("accuracy",),
          "Classify whether a short review sentence is positive or negative."),
    _demo("demo_nli", "classification", ("premise", "hypothesis"), _NLI3, ("accuracy",),
          "Decide whether one review sentence entails, contradicts or is unrelated to another."),
    _demo("demo_similarity", "regression", ("sentence1", "sentence2"), None, ("pearson", "spearman"),
          "Rate from zero to five how similar in meaning two review sentences are."),
    _demo("demo_lowres", "classification", ("sentence",), ("not_recommended", "recommended"),
          ("accuracy", "f1"),
          "Decide whether someone's reported opinion means they would recommend the thing."),
)


def _lookup_key(name: str) -> str:
    """'SST-2', 'sst_2' and 'Sst2' all become 'sst2'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task to the registry so `get_task` finds it; returns the spec."""
    key = _lookup_key(spec.name)
    existing = _REGISTRY.get(key)
    if existing is not None and existing != spec and not replace:
        raise ConfigError(
            f"task {spec.name!r} clashes with registered task {existing.name!r}; "
            "choose another name or pass replace=True"
        )
    _REGISTRY[key] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The spec for `name`, ignoring case and punctuation ('SST-2', 'STS-B', 'superglue-rte')."""
    spec = _REGISTRY.get(_lookup_key(name))
    if spec is None:
        valid = ", ".join(sorted(s.name for s in _REGISTRY.values()))
        raise UnknownTaskError(f"unknown task {name!r}; use one of: {valid}")
    return spec


def list_tasks(benchmark: Benchmark | None = None) -> list[TaskSpec]:
    """All registered specs (of one benchmark if given), in registration order."""
    return [s for s in _REGISTRY.values() if benchmark is None or s.benchmark == benchmark]


for _spec in BUILTIN_TASKS:
    register_task(_spec)
