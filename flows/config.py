"""The experiment config: YAML validated by pydantic, unknown keys rejected.

Every field has a default, so an empty config is the built-in demo. The models double as the
Prefect flows' parameters, so the Prefect UI draws a form for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ConfigError
from peft_core.task_specs import get_task

DEFAULT_GLUE_DIR = "../shared/data/glue"
DATA_DIR_ENV = "ADAPTERFLOW_DATA_DIR"
HOME_ENV = "ADAPTERFLOW_HOME"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"

SOURCE_METHODS = ("adapter",)
TRANSFER_METHODS = ("average", "adapterfusion", "scalearn", "scalearn_uniform", "scalearn_plus_plus",
                    "scalearn_uniform_plus_plus", "pemt")
BASELINE_METHODS = ("adapter", "full_finetune")
MULTITASK_METHODS = ("hyperformer", "hyperformer_plus_plus", "shared_adapter", "full_multitask")
ALL_METHODS = BASELINE_METHODS + TRANSFER_METHODS + MULTITASK_METHODS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(Strict):
    source: Literal["demo", "hub", "local"] = "demo"
    path: str | None = Field(None, description=f"data folder for source 'local' (default {DEFAULT_GLUE_DIR}, or ${DATA_DIR_ENV})")
    split: Literal["scalearn", "hyperformer"] = "scalearn"
    seed: int = 42
    max_train: int | None = Field(None, gt=0, description="cap on training examples per task")
    max_eval: int | None = Field(None, gt=0, description="cap on validation and test examples per task")
    max_train_per_task: dict[str, int] = Field(default_factory=dict, description="per-task training caps")
    max_train_targets: int | None = Field(None, gt=0, description="cap on a target's training examples in the transfer stage")

    def resolved_path(self) -> Path | None:
        if self.source != "local":
            return None
        return Path(os.environ.get(DATA_DIR_ENV) or self.path or DEFAULT_GLUE_DIR)

    def train_cap(self, task: str) -> int | None:
        return self.max_train_per_task.get(task, self.max_train)


class AdapterSettings(Strict):
    placement: Literal["pfeiffer", "houlsby"] = "pfeiffer"
    reduction_factor: int = Field(16, gt=0)
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"
    init_std: float = Field(0.02, gt=0)

    def to_core(self) -> AdapterConfig:
        return AdapterConfig(**self.model_dump())


class TrainSettings(Strict):
    learning_rate: float = Field(3e-4, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    epochs: int = Field(10, gt=0)
    max_length: int = Field(128, gt=8)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, ge=0)
    patience: int = Field(3, gt=0)
    max_steps_per_epoch: int | None = Field(None, gt=0)

    def to_core(self, seed: int) -> TrainConfig:
        return TrainConfig(seed=seed, **self.model_dump())


class TrainingSettings(Strict):
    sources: TrainSettings = TrainSettings()
    targets: TrainSettings = TrainSettings()
    multitask: TrainSettings = TrainSettings()
    full_finetune_learning_rate: float = Field(2e-5, gt=0)

    def for_role(self, role: Literal["source", "target"]) -> TrainSettings:
        return self.sources if role == "source" else self.targets


class TransferSettings(Strict):
    source_set: dict[str, Literal["all", "others"]] = Field(
        default_factory=lambda: {"default": "all", "pemt": "others"},
        description="'all': sources include the target's own adapter (ScaLearn); 'others': they exclude it (PEMT)",
    )
    pemt_sparsity_weight: float = Field(0.1, ge=0)
    temperature: float = Field(10.0, gt=0, description="multitask task-sampling temperature T")

    def sources_for(self, method: str, target: str, sources: list[str]) -> list[str]:
        rule = self.source_set.get(method, self.source_set.get("default", "all"))
        return [s for s in sources if rule == "all" or s != target]


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
    home: str = Field(".adapterflow", description=f"where stores and artifacts live (or ${HOME_ENV})")
    data: DataSettings = DataSettings()
    sources: list[str] = ["demo_sentiment", "demo_nli", "demo_similarity", "demo_lowres"]
    targets: list[str] = ["demo_lowres"]
    methods: list[str] = ["adapter", "scalearn", "scalearn_plus_plus", "average"]
    adapter: AdapterSettings = AdapterSettings()
    training: TrainingSettings = TrainingSettings()
    transfer: TransferSettings = TransferSettings()
    seeds: list[int] = [42]
    tracking: TrackingSettings = TrackingSettings()
    runner: RunnerSettings = RunnerSettings()
    force_stages: list[Literal["sources", "transfer", "multitask", "evaluate"]] = Field(
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
        return [get_task(n).name for n in names]  # raises UnknownTaskError listing valid names

    @model_validator(mode="after")
    def _has_seeds(self) -> "PipelineConfig":
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. seeds: [42]")
        return self

    def home_dir(self) -> Path:
        return Path(os.environ.get(HOME_ENV) or self.home).resolve()

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def needs_prompts(self) -> bool:
        return "pemt" in self.methods

    def methods_in(self, group: tuple[str, ...]) -> list[str]:
        return [m for m in self.methods if m in group]


def _format_validation_error(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling against configs/demo.yaml"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{where}: field '{loc}': {msg}{more}"


def load_config(path: Path | str | None = None, **overrides) -> PipelineConfig:
    """Read and validate a YAML config; no path gives the built-in demo config."""
    path = Path(path) if path is not None else DEMO_CONFIG
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file such as configs/demo.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a mapping of settings (like configs/demo.yaml)")
    raw = _apply_overrides(raw, overrides)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where)) from None


def _apply_overrides(raw: dict, overrides: dict) -> dict:
    """Dotted keys from the command line, e.g. {"data.path": "/data/glue"}."""
    raw = dict(raw)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[leaf] = value
    return raw
