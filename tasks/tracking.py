"""MLflow, through its client API only (the fluent API's active run is per thread, and units run
in parallel threads). One parent run per pipeline run; one child run per unit of work, created
with an explicit parent id and tagged `stage`, `task`, `method`, `unit_key`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import requests
from mlflow.entities import Param, RunStatus
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from tasks.locks import locked
from tasks.relocation import ARTIFACTS, relocate_store
from tasks.run_liveness import owner_tags
from tasks.server_errors import MLFLOW_FIX, PROBE_TIMEOUT_S, unreachable
from peft_core.errors import ConfigError

KIND_TAG = "adapterflow.kind"  # "pipeline" for parent runs, "unit" for child runs
PARENT_TAG = "mlflow.parentRunId"
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
UNIT_KEY_TAG = "unit_key"  # every unit's key (source adapter, fit, joint model, evaluation)
LEGACY_UNIT_KEY_TAG = "adapter_key"  # the same tag's name before; runs of older stores still carry it
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (markdown)
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
ARTIFACT_PATH = "adapter"  # a unit run's fitted folder among its MLflow artifacts
# MLflow 3's UI opens an experiment by its kind; without one it guesses, and shows the GenAI overview
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"  # "Machine learning"
# A view of the runs table (MLflow's shared views: an experiment tag the UI opens at ?viewStateShareKey=)
RUNS_VIEW_KEY, SHARED_VIEW_TAG = "adapterflow", "mlflow.sharedViewState."
BACKBONE_FINGERPRINT_TAG = "backbone_fingerprint"  # the backbone a unit ran on; a run is reused only on it
MAIN_METRIC_TAG = "main_metric"  # the unit task's main metric, which the report compares methods by

logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Tracking:
    """Where runs go: a tracking URI, the experiment and its artifact root."""

    uri: str
    experiment: str
    artifact_root: str | None

    @classmethod
    def at(cls, uri: str | None, experiment: str, home: Callable[[], Path]) -> "Tracking":
        """The store at `uri`, else at $MLFLOW_TRACKING_URI, else a SQLite store (and its artifacts)
        in the folder `home()` gives, which is asked for only then."""
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        artifact_root = None
        if not uri:
            folder = home()
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            artifact_root = (folder / ARTIFACTS).as_uri()
        return cls(uri=uri, experiment=experiment, artifact_root=artifact_root)

    def client(self) -> MlflowClient:
        check_tracking_server(self.uri)
        _create_sqlite_store_once(self.uri, relocate=self.artifact_root is not None)
        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return _ServerClient(client, self.uri) if _is_server(self.uri) else client

    def experiment_id(self, create: bool = True) -> str | None:
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            if create and EXPERIMENT_KIND_TAG not in exp.tags:  # made before the tag, or by someone else
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return exp.experiment_id
        if not create:
            return None
        root = f"{self.artifact_root}/{self.experiment}" if self.artifact_root else None
        try:
            return client.create_experiment(self.experiment, artifact_location=root,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel unit
            return client.get_experiment_by_name(self.experiment).experiment_id


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


@functools.cache
def check_tracking_server(uri: str) -> None:
    """For an http(s) tracking URI: one ConfigError within seconds, naming the URI and what to check,
    when the server does not answer its health check (checked once per process)."""
    if not _is_server(uri):
        return
    try:
        response = http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0,
                                timeout=PROBE_TIMEOUT_S, raise_on_status=False)
    except MlflowException as exc:
        raise _unreachable(uri, exc, PROBE_TIMEOUT_S) from None
    if response.status_code != 200:
        raise ConfigError(f"MLflow tracking server {uri} answered HTTP {response.status_code} to /health "
                          f"(is it an MLflow server? do MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN hold?); {MLFLOW_FIX}")


@contextmanager
def server_answers(uri: str):
    """A call to a tracking server that stopped answering after the start-up check (stopped, killed,
    network gone) fails with the same one line as that check, instead of MLflow's chained errors."""
    try:
        yield
    except MlflowException as exc:
        if not isinstance(exc.__cause__ or exc.__context__, requests.exceptions.RequestException):
            raise  # the server answered: an API error that callers handle
        raise _unreachable(uri, exc, MLFLOW_HTTP_REQUEST_TIMEOUT.get()) from None


class _ServerClient:
    """An MlflowClient whose every call goes through `server_answers`."""

    def __init__(self, client: MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with server_answers(self._uri):
                return attr(*args, **kwargs)

        return call


def _unreachable(uri: str, error: MlflowException, timeout_s: float) -> ConfigError:
    cause = error.__cause__ or error.__context__ or error  # MLflow wraps the requests error
    return ConfigError(unreachable("MLflow tracking server", uri, cause, timeout_s, MLFLOW_FIX))


@functools.cache
def _create_sqlite_store_once(uri: str, relocate: bool = False) -> None:
    """A new SQLite store's tables are created by the first process to open it, under a lock on its
    folder: MLflow's migrations run by two processes at once on a fresh store make one fail. With
    `relocate` (the store of a home), locations it records under the folder of a home it was copied or
    moved from are pointed at its own folder (`relocation.relocate_store`)."""
    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder):
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        if relocate:
            relocate_store(Path(uri.removeprefix("sqlite:///")), folder)


def start_pipeline_run(tracking: Tracking, config: dict, run_name: str) -> str:
    """Create the parent run of one pipeline invocation of `config` (the pipeline config as JSON, kept
    as the run's config.json); returns its id."""
    client = tracking.client()
    run = client.create_run(tracking.experiment_id(), run_name=run_name,
                            tags={KIND_TAG: "pipeline", "config_name": config["name"], **owner_tags()})
    client.log_dict(run.info.run_id, config, "config.json")
    client.log_param(run.info.run_id, "backbone", config["backbone"])
    return run.info.run_id


def runs_view(main_metrics: Sequence[str]) -> dict:
    """The runs table as the MLflow UI keeps its state: newest first, each unit's stage, task, method,
    seed, main test metric(s) and whether it reused a finished run, beside its logged model."""
    def column(group: str, key: str) -> str:
        return f"{group}.`{key}`"

    return {"orderByKey": "attributes.start_time", "orderByAsc": False,
            "selectedColumns": [column("tags", "stage"), column("tags", "task"), column("tags", "method"),
                                column("params", "seed"),
                                *(column("metrics", f"test_{metric}") for metric in dict.fromkeys(main_metrics)),
                                column("tags", "reused"), column("attributes", "Models")]}


def share_runs_view(tracking: Tracking, main_metrics: Sequence[str]) -> None:
    """Keep `runs_view` as the experiment's shared view `RUNS_VIEW_KEY` (`runs_view_url` opens it)."""
    tracking.client().set_experiment_tag(tracking.experiment_id(), SHARED_VIEW_TAG + RUNS_VIEW_KEY,
                                         json.dumps(runs_view(main_metrics)))


def runs_view_urls(store_uri: str, ui_url: str) -> dict[str, str]:
    """{experiment name: the MLflow UI's address of its runs table in adapterflow's view} of the
    store's experiments that have the view."""
    experiments = MlflowClient(tracking_uri=store_uri).search_experiments()
    return {e.name: f"{ui_url}/#/experiments/{e.experiment_id}?viewStateShareKey={RUNS_VIEW_KEY}"
            for e in experiments if SHARED_VIEW_TAG + RUNS_VIEW_KEY in e.tags}


def end_run(tracking: Tracking, run_id: str, failed: bool = False) -> None:
    tracking.client().set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED))


class UnitRun:
    """A child run for one unit of work; FINISHED only if the block completes.

    `with UnitRun(...) as run:` — on an exception the run is marked FAILED, so a half-done unit
    is never mistaken for a finished one when the next pipeline run looks it up by key.
    """

    def __init__(self, tracking: Tracking, parent_run_id: str | None, name: str, *, stage: str, task: str,
                 method: str, unit_key: str, extra_tags: dict | None = None):
        self.tracking, self.client = tracking, tracking.client()
        tags = {KIND_TAG: "unit", "stage": stage, "task": task, "method": method, UNIT_KEY_TAG: unit_key,
                **owner_tags(), **(extra_tags or {})}
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        self.run_id = self.client.create_run(tracking.experiment_id(), run_name=name, tags=tags).info.run_id

    def __enter__(self) -> "UnitRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = RunStatus.FAILED if exc_type else RunStatus.FINISHED
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))

    def log_params(self, params: dict) -> None:
        items = [Param(key, str(value)[:6000]) for key, value in _flatten(params).items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.client.log_metric(self.run_id, key, float(value), step=step or 0)

    def log_history(self, history: list[dict]) -> None:
        """Per-epoch metrics as MLflow step series (train_loss, validation_<metric>)."""
        for entry in history:
            step = entry["epoch"]
            self.log_metrics({"train_loss": entry["train_loss"], "examples_per_second": entry["examples_per_second"]}, step)
            self.log_metrics({f"epoch_validation_{k}": v for k, v in entry["validation"].items()}, step)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_dict(self, data: dict, filename: str) -> None:
        self.client.log_dict(self.run_id, data, filename)


ARTIFACT_RUN_TAG = "artifact_run_id"  # on a run recording a reuse: the run that holds the unit's result


def result_run_id(run) -> str:
    """The run holding a unit run's result: the run itself, or the one a reuse record points at."""
    return run.data.tags.get(ARTIFACT_RUN_TAG, run.info.run_id)


def record_reuse(tracking: Tracking, parent_run_id: str | None, cached, name: str, *, stage: str, task: str,
                 method: str, unit_key: str, extra_tags: dict | None = None) -> str:
    """A child run of this pipeline run for a unit found finished in `cached`, with its metrics and
    tags `reused` and `artifact_run_id` (the run holding the result), so the run's record is complete.
    Its description (the MLflow UI's) links to that run, where the unit's datasets, model and artifacts
    are; its params and metrics are copied, so the runs table shows them beside those of trained units.
    Returns the new run's id."""
    source_run_id = result_run_id(cached)
    link = f"[{cached.info.run_name}](#/experiments/{cached.info.experiment_id}/runs/{source_run_id})"
    note = (f"Reused: this unit finished earlier (same key {unit_key}) in run {link}; its datasets, model and "
            "artifacts are there, its params and metrics are copied here.")
    with UnitRun(tracking, parent_run_id, name, stage=stage, task=task, method=method, unit_key=unit_key,
                 extra_tags={ARTIFACT_RUN_TAG: source_run_id, "reused": "true", NOTE_TAG: note,
                             **(extra_tags or {})}) as run:
        run.log_params(dict(cached.data.params))
        run.log_metrics(dict(cached.data.metrics))
    return run.run_id


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, f"{name}.")
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


def unit_key_of(run) -> str:
    """A unit run's key, under the tag's current name or the one older stores used."""
    tags = run.data.tags
    return tags.get(UNIT_KEY_TAG) or tags[LEGACY_UNIT_KEY_TAG]


def find_finished_unit(tracking: Tracking, unit_key: str):
    """The newest FINISHED run tagged with `unit_key` (as `unit_key`, or as `adapter_key` in runs of older
    stores, so their finished units are reused), or None (MLflow is the source of truth)."""
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        return None
    for tag in (UNIT_KEY_TAG, LEGACY_UNIT_KEY_TAG):
        runs = tracking.client().search_runs(
            [exp_id], f"tags.`{tag}` = '{unit_key}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        if runs:
            return runs[0]
    return None


def download_unit_artifact(tracking: Tracking, run_id: str, artifact_path: str, cache_dir: Path) -> Path:
    """Local folder of a run's artifact: a copy under the project home, downloaded once.

    The copy is downloaded aside and renamed into place, so a parallel unit or pipeline never reads
    a half-downloaded folder; when two download it at once, the first rename wins.
    """
    target = cache_dir / run_id / artifact_path
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            with server_answers(tracking.uri):
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                            dst_path=str(tmp), tracking_uri=tracking.uri)
            try:
                os.rename(local, target)
            except OSError:
                if not target.exists():  # else a parallel download finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def relocated_unit_artifact(tracking: Tracking, recorded: Path, cache_dir: Path) -> Path:
    """The copy in `cache_dir` of the unit artifact that a fit recorded as `recorded`, a copy in the
    cache of its home then (`<cache>/<run id>/<artifact path>`, as `download_unit_artifact` makes it),
    downloaded again when the home has been moved or copied since; any other folder is `recorded` itself."""
    run_id = recorded.parent.name
    if recorded.parent.parent.name != cache_dir.name or len(run_id) != 32 or recorded.parent.parent == cache_dir:
        return recorded
    try:
        return download_unit_artifact(tracking, run_id, recorded.name, cache_dir)
    except MlflowException:  # not a run of this store
        return recorded
