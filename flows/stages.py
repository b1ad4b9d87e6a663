"""Stage flows (prepare, sources, transfer, multitask, evaluate) and the pipeline that chains them.

Each stage runs alone (`adapterflow run CONFIG --stage NAME`, or its own deployment) and then
opens its own MLflow parent run; inside `pipeline` all stages share the pipeline's parent run.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

from prefect import flow, unmapped

from flows.config import BASELINE_METHODS, MULTITASK_METHODS, TRANSFER_METHODS, PipelineConfig
from flows.runners import make_task_runner
from tasks.adapter_units import evaluate_saved_adapter, train_source_adapter
from tasks.data_units import prepare_task_data
from tasks.multitask_units import train_multitask_unit
from tasks.transfer_units import find_source_units, fit_transfer_unit, full_finetune_unit
from tasks.reporting import publish_report
from tasks.tracking import Tracking, end_run, mark_abandoned_runs_failed, start_pipeline_run

STAGES = ("prepare", "sources", "transfer", "multitask", "evaluate")


def _open_parent(cfg: PipelineConfig, label: str) -> tuple[Tracking, str]:
    tracking = Tracking.from_config(cfg)
    mark_abandoned_runs_failed(tracking)
    return tracking, start_pipeline_run(tracking, cfg, f"{label} {datetime.now():%Y-%m-%d %H:%M:%S}")


def _wait(futures) -> list:
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


@flow(name="prepare", log_prints=True)
def prepare(config: PipelineConfig) -> dict[str, dict[str, dict]]:
    """Prepared splits for every source and target: {"source": {task: info}, "target": {...}}."""
    roles = [("source", t) for t in config.sources] + [("target", t) for t in config.targets]
    futures = prepare_task_data.map(unmapped(config), [t for _, t in roles], [r for r, _ in roles])
    prepared: dict[str, dict[str, dict]] = {"source": {}, "target": {}}
    for (role, task_name), info in zip(roles, _wait(futures)):
        prepared[role][task_name] = info
    return prepared


def _source_jobs(config: PipelineConfig) -> list[tuple[str, int, bool]]:
    prompt_kinds = [False, True] if config.needs_prompts() else [False]
    if config.needs_prompts() and set(config.methods) <= {"pemt"}:
        prompt_kinds = [True]
    return [(t, seed, p) for t in config.sources for seed in config.seeds for p in prompt_kinds]


@flow(name="sources", log_prints=True)
def sources(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[dict]:
    """Train every source adapter (one per source × seed) in parallel on the bounded task runner."""
    with _parent_run(config, parent_run_id, "sources") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        jobs = _source_jobs(config)
        return _wait(train_source_adapter.map(
            unmapped(config), [prepared["source"][t] for t, _, _ in jobs], [s for _, s, _ in jobs],
            unmapped(parent_run_id), [p for _, _, p in jobs],
        ))


def _sources_by_kind(config: PipelineConfig, prepared: dict, source_units: list[dict] | None, seed: int,
                     with_prompt: bool) -> dict[str, dict]:
    """{source task: unit} of one seed and kind, from this run's sources stage or else from MLflow."""
    method = "prompt_adapter" if with_prompt else "adapter"
    if source_units is not None:
        chosen = {u["task"]: u for u in source_units if u["method"] == method and u["seed"] == seed}
        if len(chosen) == len(config.sources):
            return chosen
    return find_source_units(config, prepared["source"], seed, with_prompt)


@flow(name="transfer", log_prints=True)
def transfer(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None,
             source_units: list[dict] | None = None) -> list[dict]:
    """Every (target, method) pair: combinations of the frozen sources and the baselines, in parallel."""
    with _parent_run(config, parent_run_id, "transfer") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        futures = []
        for seed in config.seeds:
            for target in config.targets:
                target_data = prepared["target"][target]
                for method in config.methods_in(TRANSFER_METHODS):
                    kind = _sources_by_kind(config, prepared, source_units, seed, with_prompt=method == "pemt")
                    chosen = [kind[s] for s in config.transfer.sources_for(method, target, config.sources)]
                    futures.append(fit_transfer_unit.submit(config, target_data, method, chosen, seed, parent_run_id))
                if "adapter" in config.methods:
                    futures.append(train_source_adapter.submit(config, target_data, seed, parent_run_id, False, "target"))
                if "full_finetune" in config.methods:
                    futures.append(full_finetune_unit.submit(config, target_data, seed, parent_run_id))
        return _wait(futures)


@flow(name="multitask", log_prints=True)
def multitask(config: PipelineConfig, parent_run_id: str | None = None, prepared: dict | None = None) -> list[dict]:
    """Joint training over every source and target task (HyperFormer, shared adapter, full multi-task)."""
    with _parent_run(config, parent_run_id, "multitask") as parent_run_id:
        prepared = prepared or _with_runner(prepare, config)(config)
        tasks_data = {**prepared["target"], **prepared["source"]}
        return _wait([train_multitask_unit.submit(config, tasks_data, method, seed, parent_run_id)
                      for seed in config.seeds for method in config.methods_in(MULTITASK_METHODS)])


@flow(name="evaluate", log_prints=True)
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
    role = "source" if unit["stage"] == "sources" else "target"
    return prepared[role][unit["task"]]


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig) -> str:
    """prepare -> sources -> transfer -> multitask -> evaluate under one MLflow parent run."""
    with _parent_run(config, None, "pipeline") as parent_run_id:
        prepared = _with_runner(prepare, config)(config)
        source_units = _with_runner(sources, config)(config, parent_run_id, prepared)
        units = list(source_units)
        if config.methods_in(TRANSFER_METHODS + BASELINE_METHODS) and config.targets:
            units += _with_runner(transfer, config)(config, parent_run_id, prepared, source_units)
        if config.methods_in(MULTITASK_METHODS):
            _with_runner(multitask, config)(config, parent_run_id, prepared)
        _with_runner(evaluate, config)(config, units, parent_run_id, prepared)
    return parent_run_id


def _with_runner(stage_flow, config: PipelineConfig):
    return stage_flow.with_options(task_runner=make_task_runner(config))


def run_stage(config: PipelineConfig, stage: str | None):
    """Run one stage flow (or the whole pipeline) with the config's task runner."""
    flows = {"pipeline": pipeline, "prepare": prepare, "sources": sources, "transfer": transfer,
             "multitask": multitask, "evaluate": evaluate}
    return _with_runner(flows[stage or "pipeline"], config)(config)
