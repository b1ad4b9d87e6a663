"""The units each stage runs, as typed specs built from the config: one function per stage.

This is the one place the config's settings become a unit's inputs: its backbone, adapter and
training settings, its step budget for the sample it trains on, its learning rate
(`fit_train_config`), the sources a fit combines and their order. The Prefect tasks only run specs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from flows.config import OWN_ADAPTER, PipelineConfig
from flows.peft_sources import PEFT_FILES
from flows.task_settings import task_declaration
from peft_core.compositions import get_method
from peft_core.configs import TrainConfig
from peft_core.data.readers import content_digest
from peft_core.few_shot_options import FewShotOptions
from peft_core.method_names import (
    HYPERFORMER_TRANSFER_METHODS, JOINT_MODEL_OF, MULTITASK_METHODS, TRANSFER_METHODS, reads_source_examples,
)
from flows.store import tracking_for
from tasks.unit_specs import (
    AdapterUnit, Evaluation, FewShotFit, FullFinetune, ImportedAdapter, JointModel, PreparedData, TransferFit,
    UnitContext, UnitResult,
)

# {"source": {task: data}, "target": {task: {seed: data}}}: what the prepare stage hands on
Prepared = dict[str, dict]


def unit_context(config: PipelineConfig, parent_run_id: str | None) -> UnitContext:
    return UnitContext(tracking_for(config), config.home_dir(), parent_run_id, tuple(config.force_stages))


def fit_train_config(config: PipelineConfig, method: str, seed: int, train_examples: int) -> TrainConfig:
    """The settings a fit of `method` on a target sample of `train_examples` runs with: `training.targets`,
    its step budget for the sample, at the method's learning rate. The one place a rate is resolved: full
    fine-tuning's own setting; for a transfer method `transfer.learning_rate` or, for "published",
    the paper's; HyperFormer few-shot has no published rate (the targets' rate unless one is given);
    the head's own rate where `transfer.head_learning_rate` gives one."""
    train = config.training.train_config("target", seed, train_examples)
    if method == "full_finetune":
        return dataclasses.replace(train, learning_rate=config.training.full_finetune_learning_rate)
    rate = config.transfer.learning_rate_for(method)
    if method in TRANSFER_METHODS:
        train = get_method(method).train_config(train, rate)
    elif rate != "published":
        train = dataclasses.replace(train, learning_rate=rate)
    return dataclasses.replace(train, head_learning_rate=config.transfer.head_learning_rate_for(method))


def adapter_unit(config: PipelineConfig, data: PreparedData, seed: int, with_prompt: bool = False) -> AdapterUnit:
    """One adapter on `data`: a source's, or (target data) the target's no-transfer adapter."""
    train = config.training.train_config(data.role, seed, data.sizes["train"])
    return AdapterUnit(config.backbone, data, config.adapter.to_core(), train, with_prompt, config.task_output)


def imported_source(config: PipelineConfig, task: str, prepared: Prepared) -> ImportedAdapter:
    """Source `task`'s PEFT LoRA folder imported into the config's LoRA settings (one for every seed)."""
    settings = config.tasks[task]
    folder = Path(settings.peft_adapter)
    return ImportedAdapter(config.backbone, task_declaration(task, settings).resolve().to_json(), str(folder),
                           content_digest([str(folder / name) for name in PEFT_FILES]), config.adapter.to_core(),
                           settings.peft_base_model, prepared["source"].get(task))


def sources_plan(config: PipelineConfig, prepared: Prepared) -> list[AdapterUnit | ImportedAdapter]:
    """Every source: an import of each one with a PEFT folder, and for the others one adapter per source
    seed, with a prompt for PEMT's sources (and without, unless every method is a prompt method)."""
    prompt_kinds = [False, True] if config.needs_prompts() else [False]
    if config.needs_prompts() and set(config.methods) <= set(config.prompt_methods()):
        prompt_kinds = [True]
    imported = config.imported_sources()
    return [unit for t in config.sources for unit in (
        [imported_source(config, t, prepared)] if t in imported else
        [adapter_unit(config, prepared["source"][t], seed, p) for seed in config.source_seed_list() for p in prompt_kinds])]


@dataclass(frozen=True)
class TransferPlan:
    """The transfer stage's units. `sources`: the source units its fits combine, which the sources
    stage trains or imports (a transfer stage run alone finds them in MLflow)."""

    own_adapters: list[AdapterUnit] = field(default_factory=list)
    full_finetunes: list[FullFinetune] = field(default_factory=list)
    fits: list[TransferFit] = field(default_factory=list)
    joint_models: list[JointModel] = field(default_factory=list)
    few_shot_fits: list[FewShotFit] = field(default_factory=list)
    sources: list[AdapterUnit | ImportedAdapter] = field(default_factory=list)


def transfer_plan(config: PipelineConfig, prepared: Prepared) -> TransferPlan:
    """Every (target, seed): the no-transfer adapter, full fine-tuning, each transfer method's fit over
    its sources, and HyperFormer few-shot fits over joint models of the sources that are not targets."""
    pairs = [(target, seed) for seed in config.seeds for target in config.targets]
    data = {(t, s): prepared["target"][t][s] for t, s in pairs}
    own = {pair: adapter_unit(config, data[pair], pair[1]) for pair in pairs} if config.needs_target_adapters() else {}
    sources: dict[str, AdapterUnit | ImportedAdapter] = {}
    imported = {t: imported_source(config, t, prepared) for t in config.imported_sources()}  # digests read once
    fits = []
    for (target, seed), method in [(pair, m) for pair in pairs for m in config.methods_in(TRANSFER_METHODS)]:
        chosen = []
        for name in config.transfer.sources_for(method, target, config.sources):
            if name == OWN_ADAPTER:
                chosen.append(own[(target, seed)])
                continue
            unit = imported.get(name) or adapter_unit(
                config, prepared["source"][name], config.source_seed_for(seed), method in config.prompt_methods())
            chosen.append(sources.setdefault(unit.key, unit))
        options = config.transfer.options_for(method)
        fits.append(TransferFit(config.backbone, data[(target, seed)], method, tuple(u.ref for u in chosen),
                                fit_train_config(config, method, seed, data[(target, seed)].sizes["train"]),
                                options, config.transfer.head_from(method, target),
                                tuple(u.data for u in chosen) if reads_source_examples(method, options) else (),
                                config.task_output))
    joint_models, few_shot = _few_shot_plan(config, prepared, data)
    return TransferPlan(
        own_adapters=list(own.values()),
        full_finetunes=[FullFinetune(config.backbone, data[pair], fit_train_config(config, "full_finetune", pair[1], data[pair].sizes["train"]))
                        for pair in pairs if "full_finetune" in config.methods],
        fits=fits, joint_models=joint_models, few_shot_fits=few_shot, sources=list(sources.values()))


def _few_shot_plan(config: PipelineConfig, prepared: Prepared,
                   data: dict[tuple[str, int], PreparedData]) -> tuple[list[JointModel], list[FewShotFit]]:
    """A joint HyperFormer(++) per few-shot method and source seed, on the sources that are not targets
    (so every target is new to it; no report rows), and each target's fit over it."""
    methods = config.methods_in(HYPERFORMER_TRANSFER_METHODS)
    joint_data = {t: prepared["source"][t] for t in config.hyperformer_transfer_tasks()} if methods else {}
    joint = {(m, s): joint_model(config, joint_data, JOINT_MODEL_OF[m], s, task_rows=False)
             for m in methods for s in sorted({config.source_seed_for(s) for _, s in data})}
    fits = [FewShotFit(config.backbone, data[(t, s)], m, joint[(m, config.source_seed_for(s))].ref,
                       fit_train_config(config, m, s, data[(t, s)].sizes["train"]),
                       FewShotOptions.from_options(config.transfer.options_for(m)).for_target(t), config.task_output)
            for (t, s) in data for m in methods]
    return list(joint.values()), fits


def joint_model(config: PipelineConfig, data: dict[str, PreparedData], method: str, seed: int,
                task_rows: bool = True) -> JointModel:
    """One model over every task of `data` (HyperFormer generates houlsby-placed adapters)."""
    adapter = config.adapter.to_core()
    if method.startswith("hyperformer"):
        adapter = dataclasses.replace(adapter, placement="houlsby")
    return JointModel(config.backbone, tuple(data[n] for n in sorted(data)), method, adapter,
                      config.training.multitask.to_core(seed), config.transfer.temperature, task_rows, config.task_output)


def multitask_plan(config: PipelineConfig, prepared: Prepared) -> list[JointModel]:
    """Per seed and multitask method, one joint model over every source and target task."""
    def tasks_data(seed: int) -> dict[str, PreparedData]:
        return {**{t: by_seed[seed] for t, by_seed in prepared["target"].items()}, **prepared["source"]}

    return [joint_model(config, tasks_data(seed), method, seed)
            for seed in config.seeds for method in config.methods_in(MULTITASK_METHODS)]


def evaluation_plan(config: PipelineConfig, prepared: Prepared, units: list[UnitResult]) -> list[Evaluation]:
    """An evaluation of every saved single adapter among `units`, on the data it was trained for (not an
    imported source's: it has no head)."""
    def data_of(unit: UnitResult) -> PreparedData:
        return prepared["source"][unit.task] if unit.stage == "sources" else prepared["target"][unit.task][unit.seed]

    return [Evaluation(config.backbone, unit, data_of(unit)) for unit in units
            if unit.artifact_dir and unit.method in ("adapter", "prompt_adapter")]
