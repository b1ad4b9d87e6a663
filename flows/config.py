"""The experiment config: YAML validated by pydantic, unknown keys rejected.

Only flows read it: they turn it into typed unit specs (`flows/unit_plans.py`), which is all the
tasks see. It validates against `peft_core.method_names` and imports no method implementation (nor
torch, Prefect or MLflow), so a command reports a bad config in a fraction of a second.

Every field has a default, so an empty config is the built-in demo. The models double as the
Prefect flows' parameters, so the Prefect UI draws a form for them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, get_type_hints

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ConfigError
from peft_core.few_shot_options import DEFAULT, MEAN, FewShotOptions
from peft_core.method_names import (
    ALL_METHODS, BOTTLENECK_ONLY_METHODS, HYPERFORMER_TRANSFER_METHODS, PROMPT_METHODS, TEXT_OUTPUT_METHODS,
    TRANSFER_METHODS, option_problem, text_output_problem,
)
from peft_core.task_specs import (
    TaskDeclaration, builtin_declaration, builtin_declarations, builtin_name, declaration_for_source,
)
from flows.peft_sources import imported_source_problem, source_example_readers
from flows.settings_base import Strict
from tasks.stage_table import FORCEABLE_STAGES
from flows.task_settings import CONFIG_DIR, TaskSettings, task_declaration

DEFAULT_GLUE_DIR = "../shared/data/glue"
DATA_DIR_ENV = "ADAPTERFLOW_DATA_DIR"
HOME_ENV = "ADAPTERFLOW_HOME"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _canonical_task_names(names: list[str]) -> list[str]:
    """Built-in names as the catalog spells them ('SST-2' -> 'sst2'); others are checked against the
    config's declared tasks by `PipelineConfig._tasks_are_known`."""
    return [builtin_name(n) or n for n in names]


class KShotSettings(Strict):
    """k training examples per target, drawn afresh for every seed (the low-resource protocols)."""

    k: int = Field(..., gt=0, description="training examples in total, or per label with per_label")
    per_label: bool = Field(False, description="k per label (PEMT's protocol) instead of k in total, label-balanced")
    validation_k: int | None = Field(None, gt=0, description="validation examples drawn the same way from the rest "
                                     "of train; default: as many as the training sample")


class DataSettings(Strict):
    source: Literal["demo", "hub", "local"] = "demo"
    path: str | None = Field(None, description=f"data folder for source 'local' (default {DEFAULT_GLUE_DIR}, or ${DATA_DIR_ENV})")
    split: Literal["scalearn", "hyperformer"] = "scalearn"
    seed: int = 42
    max_train: int | None = Field(None, gt=0, description="cap on training examples per task")
    max_eval: int | None = Field(None, gt=0, description="cap on validation and test examples per task")
    max_train_per_task: dict[str, int] = Field(default_factory=dict, description="per-task training caps")
    max_train_targets: int | None = Field(None, gt=0, description="cap on a target's training examples in the transfer stage")
    # `few_shot` as the papers call their low-resource protocols; in the code this sampling is "k-shot", and
    # "few-shot" is HyperFormer's few-shot transfer (the *_few_shot methods)
    few_shot: KShotSettings | None = Field(None, description="sample each target's train/validation per seed "
                                             "(sources keep all their data); test stays the whole test set")

    @field_validator("max_train_per_task")
    @classmethod
    def _canonical_task_keys(cls, caps: dict[str, int]) -> dict[str, int]:
        return dict(zip(_canonical_task_names(list(caps)), caps.values()))

    def resolved_path(self) -> Path | None:
        """The folder of the built-in tasks' files (source 'local'), else None."""
        if self.source != "local":
            return None
        return Path(os.environ.get(DATA_DIR_ENV) or self.path or DEFAULT_GLUE_DIR)

    def train_cap(self, task: str) -> int | None:
        return self.max_train_per_task.get(task, self.max_train)


def _fields_of(core: type, bounds: dict[str, dict], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """pydantic fields for a peft_core settings dataclass: its types and defaults, plus bounds."""
    hints = get_type_hints(core)
    return {f.name: (hints[f.name], Field(f.default, **bounds.get(f.name, {})))
            for f in dataclasses.fields(core) if f.name not in exclude}


class _AdapterBase(Strict):
    @model_validator(mode="after")
    def _valid_for_its_kind(self):
        try:
            self.to_core()
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("adapter: ")) from None
        return self

    def to_core(self) -> AdapterConfig:
        return AdapterConfig(**self.model_dump())


class _TrainBase(Strict):
    def to_core(self, seed: int) -> TrainConfig:
        return TrainConfig(seed=seed, **self.model_dump())


# One source of truth for each setting's type and default: peft_core's dataclasses.
AdapterSettings = create_model("AdapterSettings", __base__=_AdapterBase, **_fields_of(AdapterConfig, {
    "reduction_factor": {"gt": 0}, "init_std": {"gt": 0}}))
TrainSettings = create_model("TrainSettings", __base__=_TrainBase, **_fields_of(TrainConfig, {
    "learning_rate": {"gt": 0}, "batch_size": {"gt": 0}, "eval_batch_size": {"gt": 0}, "epochs": {"gt": 0},
    "max_length": {"gt": 8}, "weight_decay": {"ge": 0}, "warmup_ratio": {"ge": 0, "lt": 1}, "max_grad_norm": {"ge": 0},
    "patience": {"gt": 0}, "max_steps_per_epoch": {"gt": 0},
    "max_steps": {"gt": 0, "description": "a fixed step budget per fit (few-shot): the last of `epochs` rounds is "
                  "kept, no early stopping"},
    "precision": {"description": "auto: bf16 autocast where the device computes it natively, else fp32"},
}, exclude=("seed", "head_learning_rate")))  # a fit's head rate is per method: transfer.head_learning_rate


class StepBudget(Strict):
    """A target fit's step budget that grows with its training sample (k): `passes` over the sample,
    at least `min_steps`, at most `max_steps`."""

    passes: float = Field(..., gt=0, description="passes over the fit's training examples")
    min_steps: int = Field(1, gt=0, description="the floor, for the smallest samples")
    max_steps: int | None = Field(None, gt=0, description="the ceiling (none: no ceiling)")

    def steps(self, train_examples: int, batch_size: int) -> int:
        steps = max(self.min_steps, math.ceil(self.passes * train_examples / batch_size))
        return steps if self.max_steps is None else min(steps, self.max_steps)


class TrainingSettings(Strict):
    sources: TrainSettings = TrainSettings()
    targets: TrainSettings = TrainSettings()
    multitask: TrainSettings = TrainSettings()
    full_finetune_learning_rate: float = Field(2e-5, gt=0)
    target_steps: StepBudget | None = Field(
        None, description="every target fit's step budget from its number of training examples, e.g. {passes: 30, "
                          "min_steps: 60} (instead of one training.targets.max_steps for every k)")

    @model_validator(mode="after")
    def _one_step_budget(self) -> TrainingSettings:
        if self.target_steps is not None and self.targets.max_steps is not None:
            raise ValueError("training.targets.max_steps and training.target_steps both set the targets' step budget; "
                             "keep one (target_steps grows with the training sample)")
        return self

    def for_role(self, role: Literal["source", "target"]) -> TrainSettings:
        return self.sources if role == "source" else self.targets

    def train_config(self, role: Literal["source", "target"], seed: int, train_examples: int) -> TrainConfig:
        """The settings a unit of `role` trains with on `train_examples` examples: a target's step
        budget follows `target_steps` when set."""
        train = self.for_role(role).to_core(seed)
        if role == "target" and self.target_steps is not None:
            train = dataclasses.replace(train, max_steps=self.target_steps.steps(train_examples, train.batch_size))
        return train


SourceSetRule = Literal["others+own", "others", "all"]
HeadInit = Literal["new", "own"]
OWN_ADAPTER = "own"  # the target's own no-transfer adapter in a source list


def _method_keys(mapping: dict, field: str, methods: tuple[str, ...] = TRANSFER_METHODS) -> dict:
    unknown = [k for k in mapping if k != "default" and k not in methods]
    if unknown:
        raise ValueError(f"{field} has unknown method(s) {unknown}; use 'default' or one of: {', '.join(methods)}")
    return mapping


class TransferSettings(Strict):
    source_set: dict[str, SourceSetRule] = Field(
        default_factory=lambda: {"default": "others+own", "pemt": "others"},
        description="per method (or 'default'): 'others+own' = the other source tasks plus the target's own "
                    "no-transfer adapter (ScaLearn's setting); 'others' = the other source tasks (PEMT's); "
                    "'all' = every source task as trained in the sources stage, the target's included",
    )
    learning_rate: dict[str, float | Literal["published"]] = Field(
        default_factory=lambda: {"default": "published"},
        description="per method (or 'default'): the rate everything in a fit trains at, the new head included; "
                    "'published' = the paper's (training.targets.learning_rate for methods without one)",
    )
    head_learning_rate: dict[str, float] = Field(
        default_factory=dict,
        description="per method (or 'default'): a rate of its own for the new head, the rest of the fit at "
                    "learning_rate (unset: the head trains at learning_rate, as in the papers)",
    )
    head_init: dict[str, HeadInit] = Field(
        default_factory=lambda: {"default": "new"},
        description="per method (or 'default'): the target head starts 'new' (random, as in the papers) or from "
                    "the 'own' adapter's head: the source of the target's own task (its no-transfer adapter under "
                    "others+own, trained on the same examples; its full-data source adapter under all)",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per method, its builder's options, e.g. {scalearn: {omega_dropout: 0.1}}")
    temperature: float = Field(10.0, gt=0, description="multitask task-sampling temperature T")

    @field_validator("source_set", "learning_rate", "head_learning_rate", "head_init")
    @classmethod
    def _known_methods(cls, mapping: dict, info) -> dict:
        rates = ("learning_rate", "head_learning_rate")
        methods = TRANSFER_METHODS + (HYPERFORMER_TRANSFER_METHODS if info.field_name in rates else ())
        if info.field_name == "head_learning_rate" and any(not rate > 0 for rate in mapping.values()):
            raise ValueError(f"transfer.head_learning_rate {mapping} must give positive rates")
        return _method_keys(mapping, f"transfer.{info.field_name}", methods)

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict) -> dict:
        for method, values in _method_keys(options, "transfer.options", TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS).items():
            if method in HYPERFORMER_TRANSFER_METHODS:
                try:
                    FewShotOptions.from_options(values)
                except ConfigError as exc:
                    raise ValueError(f"transfer.options.{method}: {exc}") from None
                continue
            problem = option_problem(method, values)
            if problem:
                raise ValueError(f"transfer.options.{method}: {problem}")
        return options

    def _for(self, mapping: dict, method: str, fallback):
        return mapping.get(method, mapping.get("default", fallback))

    def sources_for(self, method: str, target: str, sources: list[str]) -> list[str]:
        """Source task names for a fit of `method` on `target`; `OWN_ADAPTER` marks the target's own adapter."""
        rule = self.source_set_for(method)
        chosen = [s for s in sources if rule == "all" or s != target]
        return chosen + [OWN_ADAPTER] if rule == "others+own" else chosen

    def learning_rate_for(self, method: str) -> float | Literal["published"]:
        return self._for(self.learning_rate, method, "published")

    def head_learning_rate_for(self, method: str) -> float | None:
        return self._for(self.head_learning_rate, method, None)

    def source_set_for(self, method: str) -> SourceSetRule:
        return self._for(self.source_set, method, "others+own")

    def starts_from_own_head(self, method: str) -> bool:
        return self._for(self.head_init, method, "new") == "own"

    def head_from(self, method: str, target: str) -> str | None:
        """The source whose head a fit of `method` on `target` starts from (None: a new head)."""
        return target if self.starts_from_own_head(method) else None

    def options_for(self, method: str) -> dict[str, Any]:
        return dict(self.options.get(method, {}))


class TrackingSettings(Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or SQLite under home")
    experiment: str | None = Field(None, description="MLflow experiment; default: the config's name")


class RunnerSettings(Strict):
    kind: Literal["threads", "dask"] = "threads"
    workers: int = Field(2, gt=0, description="parallel units: threads, or local Dask worker processes")
    address: str | None = Field(None, description="an existing Dask scheduler (kind: dask; its workers need "
                                "PREFECT_API_URL); default a local cluster of `workers` processes")

    @model_validator(mode="after")
    def _address_is_for_dask(self) -> "RunnerSettings":
        if self.address and self.kind != "dask":
            raise ValueError("runner.address needs runner.kind: dask; set it or remove runner.address")
        return self


class PipelineConfig(Strict):
    name: str = "demo"
    backbone: str = "minilm"
    task_output: Literal["head", "text"] = Field(
        "head", description="how models answer: `head` (a task head over the backbone's states) or `text` (an "
        "encoder-decoder such as T5 writes the label's name or the number, as HyperFormer trains; methods "
        f"{', '.join(TEXT_OUTPUT_METHODS)})")
    home: str = Field(".adapterflow", description=f"where stores and artifacts live (or ${HOME_ENV})")
    tasks: dict[str, TaskSettings] = Field(
        default_factory=dict, description="tasks of your own (name -> problem, text_fields, label_field, data, ...), "
        "and other files for built-in tasks (name -> data)")
    data: DataSettings = DataSettings()
    sources: list[str] = ["demo_sentiment", "demo_nli", "demo_similarity", "demo_lowres"]
    targets: list[str] = ["demo_lowres"]
    methods: list[str] = ["adapter", "scalearn", "scalearn_plus_plus", "average"]
    adapter: AdapterSettings = AdapterSettings()
    training: TrainingSettings = TrainingSettings()
    transfer: TransferSettings = TransferSettings()
    seeds: list[int] = [42]
    source_seeds: list[int] | None = Field(None, description="seeds the source adapters train with (default: "
                                           "`seeds`); a target seed not among them uses the first")
    tracking: TrackingSettings = TrackingSettings()
    runner: RunnerSettings = RunnerSettings()
    force_stages: list[Literal[FORCEABLE_STAGES]] = Field(
        default_factory=list,
        description="stages whose units retrain even when MLflow has them finished (CLI: --force, --force-stage)",
    )

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        unknown = [m for m in methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; valid methods: {', '.join(ALL_METHODS)}")
        return methods

    @field_validator("sources", "targets")
    @classmethod
    def _canonical_task_names(cls, names: list[str]) -> list[str]:
        return _canonical_task_names(names)

    @model_validator(mode="after")
    def _tasks_are_known(self) -> "PipelineConfig":
        declared = {name: task_declaration(name, settings) for name, settings in self.tasks.items()}
        known = [*builtin_declarations(), *(n for n in declared if n not in builtin_declarations())]
        for field_name in ("sources", "targets"):
            unknown = [n for n in getattr(self, field_name) if n not in known]
            if unknown:
                raise ValueError(f"field '{field_name}': unknown task {unknown[0]!r}; use one of: {', '.join(known)}, "
                                 "or declare it under `tasks:` (see the README's 'Your own task')")
        return self

    @model_validator(mode="after")
    def _imported_sources_can_run(self) -> "PipelineConfig":
        if problem := imported_source_problem(self):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _prompt_methods_have_descriptions(self) -> "PipelineConfig":
        methods = self.prompt_methods()
        for name in self.task_names() if methods else []:
            if not self.declared_task(name).description.strip():
                raise ValueError(f"field 'tasks.{name}.description': {methods[0]} uses each task's description as "
                                 f"its prompt, and task {name} has none; write one sentence saying what the task is")
        return self

    @model_validator(mode="after")
    def _methods_take_the_adapter_kind(self) -> "PipelineConfig":
        bottleneck_only = self.methods_in(BOTTLENECK_ONLY_METHODS)
        if self.adapter.kind != "bottleneck" and bottleneck_only:
            raise ValueError(f"field 'methods': {bottleneck_only[0]} generates bottleneck adapters, and adapter.kind is "
                             f"{self.adapter.kind!r}; remove {', '.join(bottleneck_only)} or set adapter.kind: bottleneck")
        return self

    @model_validator(mode="after")
    def _methods_have_the_task_output(self) -> "PipelineConfig":
        if self.task_output == "head":
            return self
        if problem := next(filter(None, map(text_output_problem, self.methods)), None):
            raise ValueError(f"field 'methods': {problem}")
        if self.transfer.head_learning_rate:
            raise ValueError("field 'transfer.head_learning_rate': a text-to-text model has no head; remove it or "
                             "use task_output: head")
        if own := [m for m in self.methods_in(TRANSFER_METHODS) if self.transfer.starts_from_own_head(m)]:
            raise ValueError(f"field 'transfer.head_init': {own[0]} starts from the target adapter's head, and a "
                             "text-to-text model has none; use head_init 'new' or task_output: head")
        for name in self.task_names():
            if self.declared_task(name).problem == "multiple_choice":
                raise ValueError(f"field 'task_output': task {name} is multiple choice, which has no text-to-text "
                                 "form; remove it or use task_output: head")
        return self

    @model_validator(mode="after")
    def _has_seeds(self) -> "PipelineConfig":
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. seeds: [42]")
        return self

    @model_validator(mode="after")
    def _caps_are_for_its_tasks(self) -> "PipelineConfig":
        tasks = list(dict.fromkeys(self.sources + self.targets))
        others = [t for t in self.data.max_train_per_task if t not in tasks]
        if others:
            raise ValueError(f"field 'data.max_train_per_task': task(s) {', '.join(others)} not among this config's "
                             f"sources and targets; cap one of: {', '.join(tasks)}")
        return self

    @model_validator(mode="after")
    def _own_head_has_an_own_source(self) -> "PipelineConfig":
        t = self.transfer
        for method in self.methods_in(TRANSFER_METHODS):
            if t.starts_from_own_head(method) and t.source_set_for(method) == "others":
                raise ValueError(f"field 'transfer.head_init': {method} starts its head from the target's own adapter, "
                                 f"but its transfer.source_set is 'others', which has none; give {method} source set "
                                 "'others+own' or 'all', or head_init 'new'")
        return self

    @model_validator(mode="after")
    def _hyperformer_transfer_has_sources(self) -> "PipelineConfig":
        joint = self.hyperformer_transfer_tasks()
        for method in self.methods_in(HYPERFORMER_TRANSFER_METHODS):
            if not joint:
                raise ValueError(f"method {method} needs source tasks that are not targets (its hypernetwork is "
                                 "trained on them); add some to `sources`")
            options = FewShotOptions.from_options(self.transfer.options_for(method))
            field = f"transfer.options.{method}.init_from"
            unknown = [t for t in options.named_targets() if t not in self.targets]
            if unknown:
                raise ValueError(f"{field} names {', '.join(map(repr, unknown))}, not a target of this config; give "
                                 f"one entry per target ({', '.join(self.targets)}) or '{DEFAULT}'")
            named = options.init_from if isinstance(options.init_from, dict) else {"": options.init_from}
            for target, init_from in named.items():
                if init_from != MEAN and init_from not in joint:
                    raise ValueError(f"{field}{'.' + target if target else ''} {init_from!r} is not a source task of "
                                     f"its joint model (a source that is not a target); use '{MEAN}' or one of: "
                                     f"{', '.join(joint)}")
        return self

    def home_dir(self) -> Path:
        return Path(os.environ.get(HOME_ENV) or self.home).resolve()

    def ensure_home(self) -> Path:
        """The home folder, created; a ConfigError naming it and the fix when it cannot be written."""
        return _writable_folder(self.home_dir(), f"${HOME_ENV}" if os.environ.get(HOME_ENV) else "`home` in the config")

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def source_seed_list(self) -> list[int]:
        return self.source_seeds or self.seeds

    def source_seed_for(self, seed: int) -> int:
        """The seed of the source adapters a target fit with `seed` combines."""
        seeds = self.source_seed_list()
        return seed if seed in seeds else seeds[0]

    def prompt_methods(self) -> list[str]:
        return self.methods_in(PROMPT_METHODS)

    def needs_prompts(self) -> bool:
        return bool(self.prompt_methods())

    def needs_target_adapters(self) -> bool:
        """The target's no-transfer adapter is trained when asked for or when a fit uses it as a source."""
        return "adapter" in self.methods or any(
            OWN_ADAPTER in self.transfer.sources_for(m, "", []) for m in self.methods_in(TRANSFER_METHODS))

    def hyperformer_transfer_tasks(self) -> list[str]:
        """The tasks of the joint HyperFormer a few-shot fit adapts: the sources that are not targets,
        so every target is new to the hypernetwork."""
        return [s for s in self.sources if s not in self.targets]

    def methods_in(self, group: tuple[str, ...]) -> list[str]:
        return [m for m in self.methods if m in group]

    def task_names(self) -> list[str]:
        """The tasks this config trains on: sources, then targets not among them."""
        return list(dict.fromkeys(self.sources + self.targets))

    def declared_task(self, name: str) -> TaskDeclaration:
        """Task `name` as this config declares it (under `tasks:`) or as it is built in."""
        return task_declaration(name, self.tasks[name]) if name in self.tasks else builtin_declaration(name)

    def imported_tasks(self) -> list[str]:
        """The tasks of `tasks:` with a PEFT LoRA folder (`peft_adapter`)."""
        return [name for name, settings in self.tasks.items() if settings.peft_adapter]

    def imported_sources(self) -> list[str]:
        """The sources imported from their PEFT LoRA folders instead of trained."""
        return [s for s in self.sources if s in self.imported_tasks()]

    def has_data(self, name: str) -> bool:
        """Whether task `name` has rows: a built-in task always does (its data source's), a declared one its `data`."""
        return builtin_name(name) is not None or self.tasks[name].data is not None

    def data_tasks(self) -> list[str]:
        """The tasks whose data the prepare stage reads: all but imported sources, unless a method reads them."""
        skipped = [] if source_example_readers(self) else self.imported_sources()
        return [t for t in self.task_names() if t not in skipped]

    def task_declaration(self, name: str) -> TaskDeclaration:
        """Where task `name`'s rows come from under this config: its entry's data in `tasks:`, else the
        built-in declaration's files under the data folder, its hub dataset or the demo generator (a
        declared task imported without data has none)."""
        if name in self.tasks and (self.tasks[name].data is not None or builtin_name(name) is None):
            return task_declaration(name, self.tasks[name])
        return declaration_for_source(name, self.data.source, self.data.resolved_path())


@functools.cache
def _writable_folder(folder: Path, setting: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # permissions alone miss read-only file systems and root
    except OSError as exc:
        raise ConfigError(f"home folder {folder} (from {setting}) cannot be written ({exc.strerror}: {exc.filename}); "
                          f"set {setting} to a folder you can write") from None
    return folder


def _format_validation_error(exc: ValidationError, where: str, overrides: dict) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling against configs/demo.yaml"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    overridden = [k for k in overrides if _within(loc, k)]
    if overridden:
        key = overridden[0]
        where = f"override {key}={overrides[key]!r}"
        if overrides[key] is None and loc == key:
            msg += "; this field cannot be null, give it a value"
    # A check across fields (a model validator, no location) names its fields in its message.
    return f"{where}: field '{loc}': {msg}{more}" if loc else f"{where}: {msg}{more}"


def _within(loc: str, key: str) -> bool:
    """Whether a validation error at `loc` concerns the override of dotted `key` (or the reverse)."""
    return loc == key or loc.startswith(f"{key}.") or key.startswith(f"{loc}.")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def load_config(path: Path | str | None = None, **overrides) -> PipelineConfig:
    """Read and validate a YAML config; no path gives the built-in demo config. `overrides`: dotted
    keys (see `parse_overrides`), validated with the file; None sets a key to null (pass only the
    options that were given: see `given`)."""
    path = Path(path) if path is not None else DEMO_CONFIG
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file such as configs/demo.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; pass a YAML config such as configs/demo.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}; fix the syntax there") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a mapping of settings (like configs/demo.yaml)")
    raw = _apply_overrides(raw, overrides)
    try:
        return PipelineConfig.model_validate(raw, context={CONFIG_DIR: str(path.resolve().parent)})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where, overrides)) from None


def given(options: dict[str, object]) -> dict[str, object]:
    """The options a user passed (not None), as overrides: an option left out keeps the file's value."""
    return {key: value for key, value in options.items() if value is not None}


def parse_overrides(assignments: list[str]) -> dict[str, object]:
    """`KEY=VALUE` strings (the CLI's --set) as dotted overrides; VALUE is read as YAML: 3, [1, 2], text."""
    overrides = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set training.sources.epochs=3")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {assignment}: the value is not valid YAML ({_yaml_problem(exc)})") from None
    return overrides


def _apply_overrides(raw: dict, overrides: dict) -> dict:
    """Dotted keys from the command line, e.g. {"data.path": "/data/glue"}."""
    raw = dict(raw)
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            section = node.get(key) or {}
            if not isinstance(section, dict):
                whole = ".".join(parents[:depth + 1])
                raise ConfigError(f"override {dotted}: '{whole}' is {section!r}, not a section with keys; "
                                  f"set it as a whole: {whole}=VALUE")
            node[key] = dict(section)
            node = node[key]
        node[leaf] = value
    return raw
