"""Stage flows (prepare, sources, transfer, multitask, evaluate) and the pipeline that chains them.

Each stage runs alone (`adapterflow run CONFIG --stage NAME`, or its own deployment) and then
opens its own MLflow parent run; inside `pipeline` all stages share the pipeline's parent run.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

from prefect import flow, unmapped
from prefect.futures import wait

from flows.config import PipelineConfig
from flows.runners import make_task_runner
from flows.data_plans import prepare_plan
from flows.unit_plans import evaluation_plan, multitask_plan, sources_plan, transfer_plan, unit_context
from peft_core.method_names import BASELINE_METHODS, HYPERFORMER_TRANSFER_METHODS, MULTITASK_METHODS, TRANSFER_METHODS
from tasks.adapter_units import evaluate_saved_adapter, train_adapter_unit
from tasks.common import STOP_TRAINING
from tasks.data_units import prepare_task_data
from tasks.hyperformer_transfer_units import fit_hyperformer_transfer_unit
from tasks.multitask_units import train_multitask_unit
from tasks.peft_import_units import import_peft_adapter_unit
from tasks.transfer_units import fit_transfer_unit, full_finetune_unit, require_finished_sources
from tasks.unit_specs import ImportedAdapter, UnitResult
from tasks.report_publishing import publish_report
from tasks.stage_table import RUNNABLE, STAGE_NAMES
from tasks.run_liveness import mark_abandoned_runs_failed
from tasks.tracking import Tracking, end_run, share_runs_view, start_pipeline_run
from flows.store import tracking_for

STAGES = STAGE_NAMES  # tasks.stage_table is the table; the flows below are its stages, in order


def _open_parent(cfg: PipelineConfig, label: str) -> tuple[Tracking, str]:
    tracking = tracking_for(cfg)
    mark_abandoned_runs_failed(tracking)
    share_runs_view(tracking, [cfg.task_declaration(task).main_metric for task in cfg.task_names()])
    return tracking, start_pipeline_run(tracking, cfg.model_dump(mode="json"), f"{label} {datetime.now():%Y-%m-%d %H:%M:%S}")


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
    """Prepared splits: {"source": {task: data}, "target": {task: {seed: data}}} (targets per seed:
    under data.few_shot every seed draws its own sample)."""
    jobs = prepare_plan(config)
    futures = prepare_task_data.map([recipe for _, recipe in jobs], unmapped(config.home_dir() / "data"))
    prepared: dict[str, dict] = {"source": {}, "target": {}}
    for (seed, recipe), data in zip(jobs, _wait(futures)):
        if recipe.role == "source":
            prepared["source"][recipe.task] = data
        else:
            prepared["target"].setdefault(recipe.task, {})[seed] = data
    return prepared


@flow(name="sources", log_prints=True, flow_run_name="sources {config.name}")
def sources(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[UnitResult]:
    """Train every source adapter (one per source × seed) in parallel on the bounded task runner, and
    import each source given as a PEFT LoRA folder."""
    with _parent_run(config, parent_run_id, "sources") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        context = unit_context(config, parent_run_id)
        return _wait([(import_peft_adapter_unit if isinstance(spec, ImportedAdapter) else train_adapter_unit).submit(
            spec, context) for spec in sources_plan(config, prepared)])


@flow(name="transfer", log_prints=True, flow_run_name="transfer {config.name}")
def transfer(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None,
             sources_trained: bool = False) -> list[UnitResult]:
    """Every (target, method) pair: combinations of the frozen sources and the baselines, in parallel.
    `sources_trained`: this pipeline run's sources stage has just trained them; a stage run alone
    first checks that MLflow has them."""
    with _parent_run(config, parent_run_id, "transfer") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        context = unit_context(config, parent_run_id)
        plan = transfer_plan(config, prepared)
        if not sources_trained:
            require_finished_sources(context, plan.sources)
        own = {spec.key: train_adapter_unit.submit(spec, context) for spec in plan.own_adapters}
        futures = list(own.values()) + [full_finetune_unit.submit(spec, context) for spec in plan.full_finetunes]
        # A fit that combines the target's own adapter waits for it: Prefect starts the fit once the adapter
        # is trained (and skips it if that failed) without holding up the submission of the other fits. Fits
        # without it first, so that a worker does not wait for an adapter while they could run.
        for fit in sorted(plan.fits, key=lambda fit: any(s.key in own for s in fit.sources)):
            futures.append(fit_transfer_unit.submit(fit, context, wait_for=[own[s.key] for s in fit.sources if s.key in own]))
        # Few-shot fits over joint models of the sources, trained here or found in MLflow by their keys.
        joint = {spec.key: train_multitask_unit.submit(spec, context) for spec in plan.joint_models}
        futures += list(joint.values())
        futures += [fit_hyperformer_transfer_unit.submit(fit, context, wait_for=[joint[fit.joint.key]])
                    for fit in plan.few_shot_fits]
        return _wait(futures)


@flow(name="multitask", log_prints=True, flow_run_name="multitask {config.name}")
def multitask(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[UnitResult]:
    """Joint training over every source and target task (HyperFormer, shared adapter, full multi-task)."""
    with _parent_run(config, parent_run_id, "multitask") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        context = unit_context(config, parent_run_id)
        return _wait([train_multitask_unit.submit(spec, context) for spec in multitask_plan(config, prepared)])


@flow(name="evaluate", log_prints=True, flow_run_name="evaluate {config.name}")
def evaluate(config: PipelineConfig, units: list[UnitResult] | None = None, parent_run_id: str | None = None,
             prepared: dict | None = None) -> list[UnitResult]:
    """Re-evaluate saved adapters from their artifacts (sources, unless `units` are given)."""
    with _parent_run(config, parent_run_id, "evaluate") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        units = units if units is not None else _with_runner(sources, config)(config, parent_run_id, prepared)
        return _wait(evaluate_saved_adapter.map(evaluation_plan(config, prepared, units),
                                                unmapped(unit_context(config, parent_run_id))))


@flow(name="pipeline", log_prints=True, flow_run_name="pipeline {config.name}")
def pipeline(config: PipelineConfig) -> str:
    """prepare -> sources -> transfer -> multitask -> evaluate under one MLflow parent run."""
    with _parent_run(config, None, "pipeline") as parent_run_id:
        prepared = _with_runner(prepare, config)(config)
        units = _with_runner(sources, config)(config, parent_run_id, prepared)
        if config.methods_in(TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS + BASELINE_METHODS) and config.targets:
            units += _with_runner(transfer, config)(config, parent_run_id, prepared, sources_trained=True)
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
