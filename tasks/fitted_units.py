"""Find the fitted unit a user names and fetch what it predicts with.

A reference is one of:
- `TARGET/METHOD`: that unit of the latest pipeline run (a joint model's task: `TASK/hyperformer`); where
  it names several (a task's source adapter and its no-transfer adapter, one fit per seed), the error
  lists each with its run id and registered versions;
- `NAME@ALIAS`, `models:/NAME@ALIAS` or `models:/NAME/VERSION`: a registered model;
- an MLflow run id (or `runs:/ID`): a unit's run, or the run that recorded its reuse;
- a local folder: a fitted folder (an export's `units/<key>/adapter`) or a saved model set.
Each resolves to the targets of the unit's MLflow model (`tasks.model_targets`), downloaded once; runs
logged before units were models resolve to their adapter folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlflow.exceptions import MlflowException

from peft_core.errors import ConfigError
from peft_core.artifact_files import check_artifact_files, read_artifact_config
from peft_core.model_set_files import MANIFEST, Target, model_set_targets
from tasks.model_targets import download_model_targets, run_model_id, unit_targets
from tasks.reporting import latest_pipeline_run
from tasks.stage_table import JOINT_MODEL_TAG, stage_of_tag
from tasks.tracking import ARTIFACT_PATH, PARENT_TAG, Tracking, download_unit_artifact, result_run_id

FITTED_STAGES = ("sources", "transfer", JOINT_MODEL_TAG)  # a joint model's per-task rows carry no artifact
RUN_ID = re.compile(r"(runs:/)?([0-9a-f]{32})/?")
REGISTERED = re.compile(r"(models:/)?(?P<name>[^@/]+)(@(?P<alias>[^/]+)|/(?P<version>\d+))")
REGISTERED_NAMES = ("registered as EXPERIMENT.TARGET.METHOD for a target's fits, EXPERIMENT.sources.TASK.METHOD for "
                    "source adapters, EXPERIMENT.multitask.TASKS.METHOD for joint models")


def resolve_unit(tracking: Tracking, reference: str, cache_dir: Path) -> dict[str, Target]:
    """{target name: fitted folder or (joint folder, task)} of the unit `reference` names, its
    files checked loadable."""
    targets = _targets(tracking, reference, cache_dir)
    for target in targets.values():
        check_artifact_files(target[0] if isinstance(target, tuple) else target)
    return targets


def _targets(tracking: Tracking, reference: str, cache_dir: Path) -> dict[str, Target]:
    if Path(reference).expanduser().is_dir():
        return _folder_targets(Path(reference).expanduser())
    if match := RUN_ID.fullmatch(reference):
        return _run_targets(tracking, _get_run(tracking, match.group(2)), cache_dir)
    if match := REGISTERED.fullmatch(reference):
        return _registered_targets(tracking, match, cache_dir)
    if reference.startswith(("/", ".", "~")) or reference.endswith("/") or reference.count("/") > 1:
        raise ConfigError(f"unit {reference!r} is a path, but no folder is there; pass the folder of a fitted unit "
                          "(an export's units/KEY/adapter), TARGET/METHOD, NAME@ALIAS or a run id")
    if reference.count("/") == 1:
        return _latest_run_targets(tracking, *reference.split("/"), cache_dir)
    raise ConfigError(f"unit {reference!r} is not TARGET/METHOD, NAME@ALIAS, models:/NAME/VERSION or a run id; "
                      "`adapterflow report` lists the latest run's units")


def _folder_targets(folder: Path) -> dict[str, Target]:
    if (folder / MANIFEST).is_file():
        return model_set_targets(folder)
    config = read_artifact_config(folder)
    return unit_targets(config.get("task", {}).get("name", folder.name), config["method"], folder)


def _get_run(tracking: Tracking, run_id: str):
    try:
        return tracking.client().get_run(run_id)
    except MlflowException:
        raise ConfigError(f"no MLflow run {run_id} at {tracking.uri}; check the id or pass --config/--experiment "
                          "for the store it is in") from None


def _run_targets(tracking: Tracking, run, cache_dir: Path, task: str | None = None) -> dict[str, Target]:
    run_id = result_run_id(run)
    if run_id != run.info.run_id:
        run = _get_run(tracking, run_id)
    model_id = run_model_id(tracking, run_id)
    if model_id is not None:
        targets = download_model_targets(tracking, model_id, cache_dir / "models")
    elif tracking.client().list_artifacts(run_id, ARTIFACT_PATH):
        folder = download_unit_artifact(tracking, run_id, ARTIFACT_PATH, cache_dir / "artifacts")
        targets = unit_targets(run.data.tags.get("task", "unit"), run.data.tags.get("method", "unit"), folder)
    else:
        raise ConfigError(f"run {run_id} ({run.info.run_name}) kept no fitted model; re-run its stage to fit one")
    if task is None:
        return targets
    return {name: target for name, target in targets.items() if name == task or name.startswith(f"{task}/")}


def _registered_targets(tracking: Tracking, match: re.Match, cache_dir: Path) -> dict[str, Target]:
    name, alias, version = match.group("name"), match.group("alias"), match.group("version")
    client = tracking.client()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        which = f"alias '{alias}'" if alias else f"version {version}"
        raise ConfigError(f"no registered model '{name}' with {which} at {tracking.uri}; the MLflow UI's Models page "
                          f"lists them ({REGISTERED_NAMES})") from None
    return _run_targets(tracking, _get_run(tracking, found.run_id), cache_dir)


def _latest_run_targets(tracking: Tracking, target: str, method: str, cache_dir: Path) -> dict[str, Target]:
    parent = latest_pipeline_run(tracking)
    children = tracking.client().search_runs([tracking.experiment_id(create=False)],
                                             f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and "
                                             "attributes.status = 'FINISHED'", max_results=5000)
    fitted = [r for r in children if r.data.tags.get("stage") in FITTED_STAGES]
    matches = [r for r in fitted if r.data.tags.get("method") == method
               and target in r.data.tags.get("task", "").split("+")]
    if not matches:
        units = sorted({f"{r.data.tags['task']}/{r.data.tags['method']}" for r in fitted})
        raise ConfigError(f"the latest pipeline run ({parent.info.run_id}) has no fitted unit {target}/{method}; "
                          f"its units: {', '.join(units) or 'none'}")
    # A unit this run reused under two stages (a source adapter that is also a target's) is one unit.
    matches = list({result_run_id(r): r for r in matches}.values())
    if len(matches) > 1:
        candidates = "; ".join(_describe_candidate(tracking, r) for r in matches)
        raise ConfigError(f"{target}/{method} names {len(matches)} units of the latest pipeline run "
                          f"({parent.info.run_id}): {candidates}; pick one by its run id, models:/NAME/VERSION or "
                          "NAME@ALIAS")
    joint = matches[0].data.tags.get("stage") == JOINT_MODEL_TAG
    return _run_targets(tracking, matches[0], cache_dir, task=target if joint else None)


def _describe_candidate(tracking: Tracking, run) -> str:
    """`the sources stage's demo_nli/adapter, seed 42: run ID, models:/NAME/VERSION` for a unit run."""
    client = tracking.client()
    holder = result_run_id(run)
    tags, params = run.data.tags, client.get_run(holder).data.params
    seed = f", seed {params['seed']}" if "seed" in params else ""
    registered = sorted(client.search_model_versions(f"run_id = '{holder}'"), key=lambda v: int(v.version))
    models = "".join(f", models:/{v.name}/{v.version}" for v in registered)
    return f"the {stage_of_tag(tags['stage'])} stage's {tags['task']}/{tags['method']}{seed}: run {holder}{models}"
