"""The config's `tasks:` section: tasks a user declares, and other files for built-in tasks.

    tasks:
      tickets:                       # a new task, a source or a target like any built-in one
        problem: classification
        text_fields: [subject, body]
        label_field: queue
        description: Route a customer support ticket to the queue that handles it.
        data: {train: data/tickets/train.csv, test: data/tickets/test.csv}
      boolq:                         # a built-in task: only its data may change
        data: {all: data/boolq/val.jsonl}
      sst2:                          # a source imported from a PEFT LoRA folder instead of trained
        peft_adapter: adapters/sst2-lora

A task with `peft_adapter` needs no `data` (see `flows/peft_sources.py` for when it does).
Each entry validates into a `peft_core.task_specs.TaskDeclaration` (the one set of rules for
built-in and declared tasks). Relative file paths are resolved against the config file's folder
(the validation context's `config_dir`), so a config can move with its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from peft_core.errors import ConfigError
from peft_core.task_specs import PROBLEMS, SPLITS, TaskData, TaskDeclaration, builtin_declaration, builtin_name
from flows.peft_sources import peft_folder_problem
from flows.settings_base import Strict

CONFIG_DIR = "config_dir"  # the validation context key: the folder relative data paths start from
SplitName = Literal[SPLITS]
FILE_KEYS = (*SPLITS, "all")
PEFT_FIELDS = ("peft_adapter", "peft_base_model")  # how a source is imported, not what its task is


class TaskDataSettings(Strict):
    """Where a task's rows come from (`peft_core.task_specs.TaskData` says what each key means)."""

    train: list[str] = Field(default_factory=list, description="file(s) of the training rows")
    validation: list[str] = Field(default_factory=list, description="file(s) of the validation rows (optional)")
    test: list[str] = Field(default_factory=list, description="file(s) of the test rows (optional)")
    all: list[str] = Field(default_factory=list, description="one file (or several) for every split")
    split_column: str | None = Field(None, description="with `all`: the column whose value says each row's split")
    split_values: dict[SplitName, str] = Field(default_factory=dict, description="split -> its value in split_column "
                                               "(default the split's name); for a datasets folder, its split name")
    hub: str | None = Field(None, description="a Hugging Face dataset id, loaded from the local cache")
    hub_config: str | None = Field(None, description="the hub dataset's config name")
    hub_splits: dict[SplitName, list[str]] = Field(default_factory=dict, description="split -> hub split name(s)")
    columns: dict[str, str] = Field(default_factory=dict, description="file column -> the task field it holds")
    header: list[str] | None = Field(None, description="column names of a .csv/.tsv without a header line")
    quoting: bool = Field(True, description="false: quotes in .csv/.tsv cells are plain characters (GLUE's TSVs)")

    @field_validator(*FILE_KEYS, mode="before")
    @classmethod
    def _one_path_or_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("hub_splits", mode="before")
    @classmethod
    def _one_name_or_a_list(cls, value: Any) -> Any:
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator(*FILE_KEYS)
    @classmethod
    def _relative_to_the_config(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        base = Path((info.context or {}).get(CONFIG_DIR) or ".")
        return [str((base / Path(p).expanduser()).resolve()) for p in paths]

    @model_validator(mode="after")
    def _one_origin(self) -> "TaskDataSettings":
        files = [key for key in FILE_KEYS if getattr(self, key)]
        if self.hub and files:
            raise ValueError(f"give either files ({', '.join(files)}) or hub, not both")
        if not self.hub and not files:
            raise ValueError("names no rows; give train (and optionally validation, test), all, or hub")
        if self.all and set(files) != {"all"}:
            raise ValueError("`all` is one pool for every split; leave out train/validation/test beside it")
        if self.split_column and not self.all:
            raise ValueError("split_column assigns the rows of `all`; give `all` or drop split_column")
        if self.split_values and not self.all:
            raise ValueError("split_values goes with `all` (and split_column, or a datasets folder)")
        if (self.hub_config or self.hub_splits) and not self.hub:
            raise ValueError("hub_config and hub_splits go with hub")
        return self

    def to_core(self) -> TaskData:
        fields = self.model_dump()
        fields.update({key: tuple(fields[key]) for key in FILE_KEYS})
        fields["hub_splits"] = {k: tuple(v) for k, v in fields["hub_splits"].items()}
        fields["header"] = tuple(fields["header"]) if fields["header"] else None
        return TaskData(**fields)


class TaskSettings(Strict):
    """A declared task (see `peft_core.task_specs.TaskDeclaration`); a built-in task takes `data` and the
    PEFT fields alone."""

    problem: Literal[PROBLEMS] | None = Field(None, description="classification | regression | multiple_choice")
    text_fields: list[str] | None = Field(None, description="columns fed to the model, in this order")
    label_field: str = Field("label", description="the column holding the label")
    label_names: list[str] | None = Field(None, description="labels in index order; default: the sorted values "
                                          "found in train")
    choice_fields: list[str] = Field(default_factory=list, description="multiple choice: the choices' columns")
    metrics: list[str] | None = Field(None, description="the first is the main metric; default per problem")
    description: str = Field("", description="one sentence saying what the task is (PEMT's prompt)")
    data: TaskDataSettings | None = None
    peft_adapter: str | None = Field(None, description="a PEFT LoRA folder (adapter_config.json + "
                                     "adapter_model.safetensors): as a source, the task is imported from it, not trained")
    peft_base_model: str | None = Field(None, description="the base model name the PEFT folder records, when the "
                                        "backbone is that model under another name (a hub id against a local copy)")

    @field_validator("label_names", mode="before")
    @classmethod
    def _names_as_text(cls, names: Any) -> Any:
        return [str(n) for n in names] if isinstance(names, list) else names

    @field_validator("peft_adapter")
    @classmethod
    def _a_peft_folder(cls, folder: str | None, info: ValidationInfo) -> str | None:
        if folder is None:
            return None
        path = (Path((info.context or {}).get(CONFIG_DIR) or ".") / Path(folder).expanduser()).resolve()
        if problem := peft_folder_problem(path):
            raise ValueError(problem)
        return str(path)

    @model_validator(mode="after")
    def _base_model_goes_with_a_folder(self) -> "TaskSettings":
        if self.peft_base_model and not self.peft_adapter:
            raise ValueError("peft_base_model names the base model of a peft_adapter folder; give peft_adapter or "
                             "remove peft_base_model")
        return self


def task_declaration(name: str, settings: TaskSettings) -> TaskDeclaration:
    """The declaration of config entry `name`: a built-in task with other data, or a new task.
    A `ValueError` names the entry and the field (the config loader adds the file)."""
    builtin = builtin_name(name)
    given = sorted(settings.model_fields_set - {"data", *PEFT_FIELDS})
    if builtin is not None:
        if name != builtin or given:
            raise ValueError(f"tasks.{name}: {name!r} is the built-in task {builtin}; only its data and a PEFT folder "
                             f"can be set here (tasks.{builtin}.data, tasks.{builtin}.peft_adapter"
                             f"{'; remove ' + ', '.join(given) if given else ''}), or declare a task of your own under "
                             "another name")
        if settings.data is None and settings.peft_adapter is None:
            raise ValueError(f"tasks.{name}: give the built-in task's data or peft_adapter (or remove the entry)")
        declared = builtin_declaration(builtin)
        return declared if settings.data is None else declared.with_data(settings.data.to_core())
    needed = ("problem", "text_fields") if settings.peft_adapter else ("problem", "text_fields", "data")
    missing = [key for key in needed if getattr(settings, key) is None]
    if missing:
        raise ValueError(f"tasks.{name}: a declared task needs {', '.join(missing)} (see the README's "
                         "'Your own task')")
    fields = settings.model_dump(exclude={"data", *PEFT_FIELDS})
    data = settings.data.to_core() if settings.data else TaskData()
    try:
        return TaskDeclaration(name=name, data=data, **{
            k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except ConfigError as exc:
        raise ValueError(f"tasks.{name}: {str(exc).split(': ', 1)[1]}") from None
