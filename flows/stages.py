"""Stage flows (prepare, sources, transfer, multitask, evaluate) and the pipeline that chains them.

Each stage runs alone (`adapterflow run CONFIG --stage NAME`, or its own deployment) and then
opens its own MLflow parent run; inside `pipeline` all stages share the pipeline's parent run.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

from prefect import flow, unmapped
from prefect.futures import wait

from tasks.config import OWN_ADAPTER, PipelineConfig
from flows.runners import make_task_runner
from peft_core.method_names import (
    BASELINE_METHODS, HYPERFORMER_TRANSFER_METHODS, JOINT_MODEL_OF, MULTITASK_METHODS, TRANSFER_METHODS,
)
from tasks.adapter_units import evaluate_saved_adapter, train_adapter_unit
from tasks.common import STOP_TRAINING
from tasks.data_units import prepare_task_data
from tasks.hyperformer_transfer_units import fit_hyperformer_transfer_unit
from tasks.multitask_units import train_multitask_unit
from tasks.transfer_units import find_source_units, fit_transfer_unit, full_finetune_unit
from tasks.report_publishing import publish_report
from tasks.stage_table import RUNNABLE, STAGE_NAMES
from tasks.tracking import Tracking, end_run, mark_abandoned_runs_failed, start_pipeline_run

STAGES = STAGE_NAMES  # tasks.stage_table is the table; the flows below are its stages, in order


def _open_parent(cfg: PipelineConfig, label: str) -> tuple[Tracking, str]:
    tracking = Tracking.from_config(cfg)
    mark_abandoned_runs_failed(tracking)
    return tracking, start_pipeline_run(tracking, cfg, f"{label} {datetime.now():%Y-%m-%d %H:%M:%S}")


def _wait(futures) -> list:
    """Results in order once every unit has ended: a failing unit does not cancel the others, whose
    finished results stay reusable by the next run. A unit given the future of one that failed does
    not run; the failed one is earlier in `futures`, so its error is the one raised. When the wait
    itself ends in an exception (Ctrl-C, SIGTERM), units still training stop at their next step."""
    try:
        wait(futures)
    except BaseException:
        STOP_TRAINING.set()
        raise
    return [f.result() for f in futures]


@contextmanager
def _parent_run(config: PipelineConfig, parent_run_id: str | None, label: str):
    """Yield the MLflow parent run id. A stage run alone opens its own parent run, and closes it
    (FAILED on an error, else FINISHED after publishing the comparison report)."""
    if parent_run_id is not None:
        yield parent_run_id
        return
    tracking, run_id = _open_parent(config, label)
    try:
        yield run_id
    except BaseException:
        end_run(tracking, run_id, failed=True)
        raise
    publish_report(tracking, run_id)
    end_run(tracking, run_id)


@flow(name="prepare", log_prints=True, flow_run_name="prepare {config.name}")
def prepare(config: PipelineConfig) -> dict[str, dict]:
    """Prepared splits: {"source": {task: info}, "target": {task: {seed: info}}} (targets per seed:
    under data.few_shot every seed draws its own sample)."""
    jobs = [("source", t, None) for t in config.sources] + [("target", t, s) for t in config.targets for s in config.seeds]
    futures = prepare_task_data.map(unmapped(config), [t for _, t, _ in jobs], [r for r, _, _ in jobs],
                                    [s for _, _, s in jobs])
    prepared: dict[str, dict] = {"source": {}, "target": {}}
    for (role, task_name, seed), info in zip(jobs, _wait(futures)):
        if role == "source":
            prepared["source"][task_name] = info
        else:
            prepared["target"].setdefault(task_name, {})[seed] = info
    return prepared


def source_jobs(config: PipelineConfig) -> list[tuple[str, int, bool]]:
    prompt_kinds = [False, True] if config.needs_prompts() else [False]
    if config.needs_prompts() and set(config.methods) <= set(config.prompt_methods()):
        prompt_kinds = [True]
    return [(t, seed, p) for t in config.sources for seed in config.source_seed_list() for p in prompt_kinds]


@flow(name="sources", log_prints=True, flow_run_name="sources {config.name}")
def sources(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[dict]:
    """Train every source adapter (one per source × seed) in parallel on the bounded task runner."""
    with _parent_run(config, parent_run_id, "sources") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        jobs = source_jobs(config)
        return _wait(train_adapter_unit.map(
            unmapped(config), [prepared["source"][t] for t, _, _ in jobs], [s for _, s, _ in jobs],
            unmapped(parent_run_id), with_prompt=[p for _, _, p in jobs],
        ))


def _sources_by_kind(config: PipelineConfig, prepared: dict, source_units: list[dict] | None, seed: int,
                     with_prompt: bool) -> dict[str, dict]:
    """{source task: unit} of one seed and kind, from this run's sources stage or else from MLflow."""
    method = "prompt_adapter" if with_prompt else "adapter"
    seed = config.source_seed_for(seed)
    if source_units is not None:
        chosen = {u["task"]: u for u in source_units if u["method"] == method and u["seed"] == seed}
        if len(chosen) == len(config.sources):
            return chosen
    return find_source_units(config, prepared["source"], seed, with_prompt)


@flow(name="transfer", log_prints=True, flow_run_name="transfer {config.name}")
def transfer(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None,
             source_units: list[dict] | None = None) -> list[dict]:
    """Every (target, method) pair: combinations of the frozen sources and the baselines, in parallel."""
    with _parent_run(config, parent_run_id, "transfer") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        pairs = [(target, seed) for seed in config.seeds for target in config.targets]
        own = {(t, s): train_adapter_unit.submit(config, prepared["target"][t][s], s, parent_run_id, role="target")
               for t, s in pairs} if config.needs_target_adapters() else {}
        futures = list(own.values())
        futures += [full_finetune_unit.submit(config, prepared["target"][t][s], s, parent_run_id)
                    for t, s in pairs if "full_finetune" in config.methods]
        # The target's own adapter goes in as its future: Prefect starts the fit once the adapter is trained
        # (and skips it if that failed) without holding up the submission of the other fits. Fits without
        # it first, so that a worker does not wait for an adapter while they could run.
        fits = [(t, s, m) for t, s in pairs for m in config.methods_in(TRANSFER_METHODS)]
        fits.sort(key=lambda fit: OWN_ADAPTER in config.transfer.sources_for(fit[2], fit[0], config.sources))
        for target, seed, method in fits:
            with_prompt = method in config.prompt_methods()
            names = config.transfer.sources_for(method, target, config.sources)
            kind = _sources_by_kind(config, prepared, source_units, seed, with_prompt) if set(names) - {OWN_ADAPTER} else {}
            chosen = [own[(target, seed)] if name == OWN_ADAPTER else kind[name] for name in names]
            data = [prepared["target"][target][seed] if name == OWN_ADAPTER else prepared["source"][name] for name in names]
            futures.append(fit_transfer_unit.submit(config, prepared["target"][target][seed], method, chosen, seed,
                                                    parent_run_id, source_data=data))
        futures += _hyperformer_transfer_fits(config, prepared, pairs, parent_run_id)
        return _wait(futures)


def _hyperformer_transfer_fits(config: PipelineConfig, prepared: dict, pairs: list[tuple[str, int]],
                               parent_run_id: str) -> list:
    """Few-shot fits over a joint HyperFormer(++) of the sources that are not targets: the joint model
    (one per variant and source seed, a multitask unit without report rows) is trained here or found
    in MLflow by its key; its fits get its future and start once it is there."""
    methods = config.methods_in(HYPERFORMER_TRANSFER_METHODS)
    joint_data = {t: prepared["source"][t] for t in config.hyperformer_transfer_tasks()}
    source_seeds = sorted({config.source_seed_for(s) for _, s in pairs})
    joint = {(m, s): train_multitask_unit.submit(config, joint_data, JOINT_MODEL_OF[m], s, parent_run_id,
                                                 task_rows=False) for m in methods for s in source_seeds}
    fits = [fit_hyperformer_transfer_unit.submit(config, prepared["target"][t][s], m,
                                                 joint[(m, config.source_seed_for(s))], s, parent_run_id)
            for t, s in pairs for m in methods]
    return list(joint.values()) + fits


@flow(name="multitask", log_prints=True, flow_run_name="multitask {config.name}")
def multitask(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[dict]:
    """Joint training over every source and target task (HyperFormer, shared adapter, full multi-task)."""
    with _parent_run(config, parent_run_id, "multitask") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        def tasks_data(seed: int) -> dict[str, dict]:
            return {**{t: by_seed[seed] for t, by_seed in prepared["target"].items()}, **prepared["source"]}

        return _wait([train_multitask_unit.submit(config, tasks_data(seed), method, seed, parent_run_id)
                      for seed in config.seeds for method in config.methods_in(MULTITASK_METHODS)])


@flow(name="evaluate", log_prints=True, flow_run_name="evaluate {config.name}")
def evaluate(config: PipelineConfig, units: list[dict] | None = None, parent_run_id: str | None = None,
             prepared: dict | None = None) -> list[dict]:
    """Re-evaluate saved adapters from their artifacts (sources, unless `units` are given)."""
    with _parent_run(config, parent_run_id, "evaluate") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        units = units if units is not None else _with_runner(sources, config)(config, parent_run_id, prepared)
        evaluable = [u for u in units if u.get("artifact_dir") and u["method"] in ("adapter", "prompt_adapter")]
        return _wait(evaluate_saved_adapter.map(unmapped(config), evaluable,
                                                [_prepared_for(prepared, u) for u in evaluable], unmapped(parent_run_id)))


def _prepared_for(prepared: dict, unit: dict) -> dict:
    if unit["stage"] == "sources":
        return prepared["source"][unit["task"]]
    return prepared["target"][unit["task"]][unit["seed"]]


@flow(name="pipeline", log_prints=True, flow_run_name="pipeline {config.name}")
def pipeline(config: PipelineConfig) -> str:
    """prepare -> sources -> transfer -> multitask -> evaluate under one MLflow parent run."""
    with _parent_run(config, None, "pipeline") as parent_run_id:
        prepared = _with_runner(prepare, config)(config)
        source_units = _with_runner(sources, config)(config, parent_run_id, prepared)
        units = list(source_units)
        if config.methods_in(TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS + BASELINE_METHODS) and config.targets:
            units += _with_runner(transfer, config)(config, parent_run_id, prepared, source_units)
        if config.methods_in(MULTITASK_METHODS):
            _with_runner(multitask, config)(config, parent_run_id, prepared)
        _with_runner(evaluate, config)(config, units, parent_run_id, prepared)
    return parent_run_id


def _with_runner(stage_flow, config: PipelineConfig):
    return stage_flow.with_options(task_runner=make_task_runner(config))


def run_stage(config: PipelineConfig, stage: str | None):
    """Run one stage flow (or the whole pipeline) with the config's task runner."""
    STOP_TRAINING.clear()
    return _with_runner(STAGE_FLOWS[stage or "pipeline"], config)(config)


STAGE_FLOWS = {f.name: f for f in (pipeline, prepare, sources, transfer, multitask, evaluate)}
assert tuple(STAGE_FLOWS) == RUNNABLE, f"flows {tuple(STAGE_FLOWS)} do not match the stage table {RUNNABLE}"
