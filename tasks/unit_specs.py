"""Every kind of unit as a typed spec: a frozen dataclass holding exactly the unit's inputs.

A spec's cache key, its MLflow params and the settings its job runs with all derive from its fields,
so they cannot drift: `inputs()` names what the key hashes, `params()` is those same inputs (under the
names runs have always been logged with, `PARAM_NAMES`) plus facts derived from them for readers
(seed, sizes, source names). Specs are built from the pipeline's config by `flows/unit_plans.py`;
the Prefect tasks in `tasks/*_units.py` take a spec and a `UnitContext` and return a `UnitResult`.

A unit that builds on others (a transfer fit on its sources, a few-shot fit on its joint model)
holds them as `UnitRef`s: their keys are part of its key, and its job finds their files by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from peft_core.artifact_layout import IMPORTED_LORA
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data import DatasetSplits
from peft_core.few_shot_options import FewShotOptions
from peft_core.task_specs import TaskSpec
from tasks.keys import unit_key
from tasks.prepared_data import load_splits
from tasks.stage_table import JOINT_MODEL_TAG
from tasks.task_data import Role
from tasks.tracking import Tracking


# input name in a key -> its MLflow param's name, where they differ (the names runs were always logged with)
PARAM_NAMES = {"data": "data_digest", "train": "training", "prompt": "with_prompt", "sources": "source_keys",
               "joint": "joint_unit_key"}


@dataclass(frozen=True)
class PreparedData:
    """A task's prepared splits (`prepare_task_data`): what a unit trains and is evaluated on."""

    task: str
    folder: str
    digest: str
    spec: dict  # the TaskSpec as JSON
    sizes: dict[str, int]
    role: Role
    seed: int | None = None  # a target's few-shot sample seed

    def task_spec(self) -> TaskSpec:
        """The spec the task was read for (its label names those its files hold)."""
        return TaskSpec.from_json(self.spec)

    def splits(self) -> DatasetSplits:
        return load_splits(Path(self.folder))

    @property
    def main_metric(self) -> str:
        return self.spec["metrics"][0]


@dataclass(frozen=True)
class UnitRef:
    """A unit another builds on, by key: its files are found in MLflow when the job runs."""

    task: str
    method: str
    key: str


@dataclass(frozen=True)
class UnitContext:
    """Where units run: the store, the pipeline run they belong to, the stages forced to rerun."""

    tracking: Tracking
    home: Path
    parent_run_id: str | None = None
    force_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnitResult:
    """What a unit hands to the next stage: small facts, never models. `evaluation`: the metrics an
    evaluation unit recomputed for it."""

    stage: str
    task: str
    method: str
    unit_key: str
    run_id: str  # this pipeline run's child run of the unit
    artifact_dir: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    seed: int | None = None
    evaluation: dict[str, float] | None = None

    @property
    def ref(self) -> UnitRef:
        return UnitRef(self.task, self.method, self.unit_key)


def output_input(task_output: str) -> dict:
    """A key's input for the output form: none for heads, so that their keys stay as they were."""
    return {} if task_output == "head" else {"task_output": task_output}


class UnitSpec:
    """What every spec derives from its fields. Subclasses set `kind` (the key's kind, which names its
    compute components) and define `stage`, `method` and `inputs`; by default a unit's task is its data's
and its seed its training settings'."""

    kind: ClassVar[str]
    param_names: ClassVar[dict[str, str]] = PARAM_NAMES
    predicts: ClassVar[bool] = True  # its artifact has a head: it is logged and registered as a model
    backbone: str
    task_output: str = "head"  # `load_backbone`'s output; the specs that can train in text form have it as a field

    def inputs(self) -> dict:
        """The inputs that decide the unit's result, as its key hashes them."""
        raise NotImplementedError

    def described(self) -> dict:
        """Facts derived from the inputs that a reader of its run wants beside them."""
        return {"seed": self.seed, "sizes": self.data.sizes}

    @property
    def key(self) -> str:
        return unit_key(self.kind, **self.inputs())

    @property
    def ref(self) -> UnitRef:
        """How a unit that builds on this one names it."""
        return UnitRef(self.task, self.method, self.key)

    def params(self) -> dict:
        """Its MLflow params: every input that is set (the backbone, data, settings it ran with; the key
        leaves out None too), then `described`."""
        named = {self.param_names.get(name, name): value for name, value in self.inputs().items() if value is not None}
        return named | self.described()

    @property
    def datasets(self) -> tuple[PreparedData, ...]:
        """The prepared data the unit trains and is evaluated on."""
        return (self.data,)

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def seed(self) -> int | None:
        return self.train.seed


@dataclass(frozen=True)
class AdapterUnit(UnitSpec):
    """One adapter on one task: a source's (sources stage) or a target's no-transfer baseline, which
    fits may also combine as the target's own adapter; `with_prompt` adds a task prompt (PEMT's sources)."""

    kind: ClassVar[str] = "adapter"
    backbone: str
    data: PreparedData
    adapter: AdapterConfig
    train: TrainConfig
    with_prompt: bool = False
    task_output: str = "head"

    @property
    def stage(self) -> str:
        return "sources" if self.data.role == "source" else "transfer"

    @property
    def method(self) -> str:
        return "prompt_adapter" if self.with_prompt else "adapter"

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, task=self.task, data=self.data.digest, adapter=self.adapter.to_dict(),
                    train=self.train.to_dict(), prompt=self.with_prompt, **output_input(self.task_output))


@dataclass(frozen=True)
class ImportedAdapter(UnitSpec):
    """A source taken in from a Hugging Face PEFT LoRA folder (`peft_core.peft_import`): nothing trains.
    Its key holds the folder's content digest, not its path, so a changed folder is imported again. It
    has no head, so it predicts nothing on its own. `data`: the task's prepared data where a method reads
    every source's examples (AdapterSoup's similarity), which the import itself never reads."""

    kind: ClassVar[str] = "peft_import"
    stage: ClassVar[str] = "sources"
    method: ClassVar[str] = IMPORTED_LORA  # the method its artifact records
    predicts: ClassVar[bool] = False
    backbone: str
    spec: dict  # the TaskSpec as JSON
    folder: str
    digest: str  # of the folder's two files
    adapter: AdapterConfig  # the run's LoRA config, which the import maps into so that it stacks
    base_model: str | None = None  # the name the folder records for the backbone, if another
    data: PreparedData | None = None

    @property
    def task(self) -> str:
        return self.spec["name"]

    @property
    def seed(self) -> None:
        return None

    @property
    def datasets(self) -> tuple[PreparedData, ...]:
        return ()

    def task_spec(self) -> TaskSpec:
        return TaskSpec.from_json(self.spec)

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, task=self.task, spec=self.spec, peft_digest=self.digest,
                    adapter=self.adapter.to_dict(), base_model=self.base_model)

    def described(self) -> dict:
        return {"peft_folder": self.folder}


@dataclass(frozen=True)
class TransferFit(UnitSpec):
    """A transfer method's combination of frozen source units fitted on a target. `source_data`: the
    prepared data of each source (same order), which a method that chooses among its sources by their
    examples reads (AdapterSoup); the source keys already identify it."""

    kind: ClassVar[str] = "transfer"
    stage: ClassVar[str] = "transfer"
    backbone: str
    data: PreparedData
    method: str
    sources: tuple[UnitRef, ...]
    train: TrainConfig
    options: dict = field(default_factory=dict)
    head_from: str | None = None  # the source whose head the fit starts from (None: a new head)
    source_data: tuple[PreparedData, ...] = ()
    task_output: str = "head"

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, task=self.task, data=self.data.digest, method=self.method,
                    sources=[s.key for s in self.sources], train=self.train.to_dict(), options=self.options,
                    head_from=self.head_from, **output_input(self.task_output))

    def described(self) -> dict:
        return super().described() | {"sources": [s.task for s in self.sources]}


@dataclass(frozen=True)
class FullFinetune(UnitSpec):
    """The full fine-tuning baseline on a target: the whole encoder and a head train."""

    kind: ClassVar[str] = "full_finetune"
    stage: ClassVar[str] = "transfer"
    method: ClassVar[str] = "full_finetune"
    backbone: str
    data: PreparedData
    train: TrainConfig

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, task=self.task, data=self.data.digest, train=self.train.to_dict())


@dataclass(frozen=True)
class JointModel(UnitSpec):
    """One model trained on several tasks at once (HyperFormer, shared adapter, full multi-task), with
    task sampling at `temperature`. `task_rows`: each task also gets a row run for the report (a joint
    model that is only the source of few-shot fits gets none); what it reports, not what it computes."""

    kind: ClassVar[str] = "multitask"
    stage: ClassVar[str] = JOINT_MODEL_TAG
    backbone: str
    data: tuple[PreparedData, ...]  # in task-name order
    method: str
    adapter: AdapterConfig
    train: TrainConfig
    temperature: float
    task_rows: bool = True
    task_output: str = "head"

    @property
    def task(self) -> str:
        return "+".join(d.task for d in self.data)

    @property
    def datasets(self) -> tuple[PreparedData, ...]:
        return self.data

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, method=self.method, data={d.task: d.digest for d in self.data},
                    adapter=self.adapter.to_dict(), train=self.train.to_dict(), temperature=self.temperature,
                    **output_input(self.task_output))

    def described(self) -> dict:
        return {"tasks": [d.task for d in self.data], "seed": self.seed}


@dataclass(frozen=True)
class FewShotFit(UnitSpec):
    """HyperFormer few-shot transfer (METHODS §2a): a new task embedding and head (and, by its options,
    the hypernetwork) fitted on a target over a joint HyperFormer(++) of the sources."""

    kind: ClassVar[str] = "hyperformer_transfer"
    stage: ClassVar[str] = "transfer"
    backbone: str
    data: PreparedData
    method: str
    joint: UnitRef
    train: TrainConfig
    options: FewShotOptions  # resolved for this target
    task_output: str = "head"

    def inputs(self) -> dict:
        return dict(backbone=self.backbone, task=self.task, data=self.data.digest, method=self.method,
                    joint=self.joint.key, train=self.train.to_dict(), options=self.options.to_dict(),
                    **output_input(self.task_output))

    def described(self) -> dict:
        return super().described() | {"joint_model": self.joint.task, "trained": self.options.trained()}


@dataclass(frozen=True)
class Evaluation(UnitSpec):
    """An adapter's validation and test metrics recomputed from its saved files."""

    kind: ClassVar[str] = "evaluate"
    stage: ClassVar[str] = "evaluate"
    param_names: ClassVar[dict[str, str]] = {**PARAM_NAMES, "adapter": "evaluated_unit_key"}
    backbone: str
    adapter: UnitResult
    data: PreparedData

    @property
    def task(self) -> str:
        return self.adapter.task

    @property
    def method(self) -> str:
        return self.adapter.method

    @property
    def seed(self) -> int | None:
        return self.adapter.seed

    def inputs(self) -> dict:
        return dict(adapter=self.adapter.unit_key, data=self.data.digest)  # the adapter's key names the backbone

    def described(self) -> dict:
        return {"backbone": self.backbone, "seed": self.seed}


UNIT_KINDS: tuple[type[UnitSpec], ...] = (AdapterUnit, ImportedAdapter, TransferFit, FullFinetune, JointModel, FewShotFit,
                                          Evaluation)
