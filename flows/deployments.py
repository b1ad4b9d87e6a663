"""Deployable flows: the pipeline and each stage, taking a config file path and dotted overrides.

The stage flows in flows/stages.py take a validated `PipelineConfig` and need the task runner that
config asks for, which is fixed when a flow starts. A deployment's run therefore starts here: the
flow of the same name loads `config` (relative paths are read from the project folder) with
`overrides` such as {"training.sources.epochs": 3}, then runs the stage as its child flow run,
whose parameters show the resolved config in the Prefect UI.

`deployments/prefect.yaml` (`prefect deploy`) and `adapterflow serve` deploy these flows.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect import flow, get_client, serve
from prefect.exceptions import ObjectNotFound
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Schedule
from prefect.settings import get_current_settings
from prefect.states import Failed

from flows import logging_filters
from flows.config import PipelineConfig, load_config
from tasks.stage_table import PIPELINE, RUNNABLE, get_stage
from flows.stages import run_stage
from peft_core.errors import AdapterflowError, ConfigError
from tasks.server_errors import PREFECT_FIX, PROBE_TIMEOUT_S, unreachable

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"
DEMO = "configs/demo.yaml"
Overrides = dict[str, Any] | None


def load_deployed_config(config: str, overrides: Overrides) -> PipelineConfig:
    path = Path(config).expanduser()
    return load_config(path if path.is_absolute() else PROJECT_DIR / path, **(overrides or {}))


def _deployable(stage: str):
    """The flow named `stage` (a row of `tasks.stage_table`) that loads a config file and runs that
    stage (or the pipeline); its description is the table's."""
    def run(config: str = DEMO, overrides: Overrides = None):
        logging_filters.install()
        try:
            return run_stage(load_deployed_config(config, overrides), None if stage == PIPELINE.name else stage)
        except AdapterflowError as exc:  # the flow run's state message: the error's one line, nothing else
            return Failed(message=str(exc))

    run.__name__ = run.__qualname__ = stage
    run.__doc__ = get_stage(stage).description
    return flow(name=stage, log_prints=True)(run)


# Module attributes, because deployments/prefect.yaml names them as entrypoints; checked against the table.
pipeline = _deployable("pipeline")
prepare = _deployable("prepare")
sources = _deployable("sources")
transfer = _deployable("transfer")
multitask = _deployable("multitask")
evaluate = _deployable("evaluate")
DEPLOYABLE = {name: globals()[name] for name in RUNNABLE}  # a KeyError here: a stage without its flow above


def check_prefect_file(entries: list[dict], where: Path, complete: bool = False) -> None:
    """Every deployment of a prefect.yaml runs a stage of the table (or the pipeline) from this module;
    `complete`: and every one has a deployment (the project's deployments/prefect.yaml). Otherwise one
    error naming the file and what to fix."""
    module = f"{Path(__file__).relative_to(PROJECT_DIR).as_posix()}:"
    named = [entry.get("entrypoint", "") for entry in entries]
    unknown = [e for e in named if not e.startswith(module) or e.removeprefix(module) not in DEPLOYABLE]
    missing = [f"{module}{s}" for s in RUNNABLE if f"{module}{s}" not in named] if complete else []
    if unknown or missing:
        problem = f"unknown entrypoint(s) {', '.join(unknown)}" if unknown else f"no deployment for {', '.join(missing)}"
        raise ConfigError(f"{where}: {problem}; deployments run a stage of tasks/stage_table.py "
                          f"({', '.join(RUNNABLE)}) with entrypoint {module}STAGE")


def serve_deployments(prefect_file: Path, config: Path | None) -> None:
    """Serve the deployments of `prefect_file` (same names, parameters and schedules) from this
    process until Ctrl-C; `config` replaces their default config file."""
    if not prefect_file.is_file():
        raise ConfigError(f"{prefect_file} does not exist; pass --prefect-file with the project's deployments/prefect.yaml")
    api = get_current_settings().api.url
    if not api:
        raise ConfigError("serve needs a Prefect server: start one with `adapterflow up` or set PREFECT_API_URL")
    entries = (yaml.safe_load(prefect_file.read_text()) or {}).get("deployments") or []
    if not entries:
        raise ConfigError(f"{prefect_file} lists no deployments; see deployments/README.md")
    check_prefect_file(entries, prefect_file)
    deployments = [_to_deployment(entry, config) for entry in entries]
    try:
        _refuse_work_pool_deployments(deployments)
    except httpx.ConnectError as exc:
        raise ConfigError(unreachable("Prefect server", api, exc, PROBE_TIMEOUT_S, PREFECT_FIX)) from None
    signal.signal(signal.SIGINT, _stop_like_sigterm)
    serve(*deployments)


def _stop_like_sigterm(signum, frame) -> None:
    """Ctrl-C takes the runner's SIGTERM path (pause the deployments, stop): a KeyboardInterrupt that
    lands in the runner's event loop just as a served flow run ends was seen to be swallowed. What
    asyncio then logs about the connections it cancels is shutdown noise."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    os.kill(os.getpid(), signal.SIGTERM)


def _to_deployment(entry: dict, config: Path | None):
    parameters = dict(entry.get("parameters") or {})
    if config is not None:
        parameters["config"] = str(config.resolve())
    return load_flow_from_entrypoint(str(PROJECT_DIR / entry["entrypoint"])).to_deployment(
        name=entry["name"], parameters=parameters, description=entry.get("description"), tags=entry.get("tags"),
        schedules=[Schedule(**schedule) for schedule in entry.get("schedules") or []],
    )


def _refuse_work_pool_deployments(deployments: list) -> None:
    """Serving a deployment that `prefect deploy` put on a work pool would leave a broken mix of both."""
    on_pools = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                pool = client.read_deployment_by_name(name).work_pool_name
            except ObjectNotFound:
                continue
            if pool:
                on_pools.append(f"{name} (pool {pool})")
    if on_pools:
        raise ConfigError(f"already deployed on a work pool: {', '.join(on_pools)}; start a worker for them instead, "
                          "or remove them first with `prefect deployment delete NAME`")
