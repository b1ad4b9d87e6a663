"""Finished units carried between MLflow stores as a folder of safetensors + JSON (`export_folder`).

Exporting writes every finished unit's fitted folder (its files checked loadable first), its run's
record and a checksum of every file into a new folder, or in place of an earlier export when asked,
in one atomic step. Importing checks the whole export before it writes anything: every checksum,
every unit's files, and the backbone each unit was made on against the config's. It then creates
one run per unit the store lacks, tagged with the unit's key, with its adapter folder and MLflow
model, and marks them all FINISHED together at the end (a failure marks them FAILED; a killed
import leaves RUNNING runs of a dead process, which nothing reuses). Only then are their models
registered. The pipeline's lookup by key then reuses them instead of training, on a new machine
or a colleague's store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from peft_core.artifact_files import check_artifact_files
from peft_core.checkpoints import atomic_directory_write
from peft_core.errors import ConfigError, DataError
from peft_core.inference import bundle_fitted_model
from tasks.export_folder import REQUIRED_TAGS, ExportedUnit, check_destination, read_export, write_manifest, write_unit
from tasks.fitted_units import FITTED_STAGES
from tasks.model_targets import run_model_id, unit_targets
from tasks.models import log_fitted_model, model_example_rows, register_model
from tasks.stage_table import stage_of_tag
from tasks.tracking import (BACKBONE_FINGERPRINT_TAG, KIND_TAG, LEGACY_UNIT_KEY_TAG, UNIT_KEY_TAG, Tracking, UnitRun,
                            download_unit_artifact, relocated_unit_artifact, unit_key_of)
from tasks.units import ARTIFACT_PATH, backbone_fingerprint, logged_model_name, reusable_run

EXPORTABLE_STAGES = tuple(dict.fromkeys(stage_of_tag(tag) for tag in FITTED_STAGES))  # stages whose units keep files
UNIT_TAGS = (*REQUIRED_TAGS, UNIT_KEY_TAG, LEGACY_UNIT_KEY_TAG)  # what UnitRun sets from its arguments
PRIVATE_TAG_PREFIXES = ("mlflow.", "adapterflow.")  # run bookkeeping of the exporting store


def finished_units(tracking: Tracking, stages: Sequence[str] = ()) -> list:
    """The newest FINISHED run of every unit key that trained and kept an artifact (reuse records left out)."""
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        return []
    client = tracking.client()
    runs = client.search_runs([exp_id], f"tags.`{KIND_TAG}` = 'unit' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50000)
    tags = {tag for tag in FITTED_STAGES if not stages or stage_of_tag(tag) in stages}
    newest = {}
    for run in runs:
        if run.data.tags.get("reused") == "true" or run.data.tags.get("stage") not in tags:
            continue
        if unit_key_of(run) not in newest and client.list_artifacts(run.info.run_id, ARTIFACT_PATH):
            newest[unit_key_of(run)] = run
    return list(newest.values())


def export_units(tracking: Tracking, destination: Path, home: Path, stages: Sequence[str] = (),
                 overwrite: bool = False, keys: Sequence[str] = ()) -> list[str]:
    """Write every finished unit (of `stages`, and with one of `keys`, if given) of the store at `home`
    into `destination`; returns their keys."""
    unknown = [s for s in stages if s not in EXPORTABLE_STAGES]
    if unknown:
        raise ConfigError(f"unknown --stage {unknown[0]!r}; the stages whose units can be exported: "
                          f"{', '.join(EXPORTABLE_STAGES)}")
    check_destination(destination, _store_folders(tracking, home), overwrite)
    runs = finished_units(tracking, stages)
    if keys:
        missing = sorted(set(keys) - {unit_key_of(run) for run in runs})
        if missing:
            raise DataError(f"experiment '{tracking.experiment}' at {tracking.uri} has no finished unit {missing[0]}"
                            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; run the pipeline "
                            "that trains it first")
        runs = [run for run in runs if unit_key_of(run) in set(keys)]
    if not runs:
        which = f" of stage(s) {', '.join(stages)}" if stages else ""
        raise DataError(f"experiment '{tracking.experiment}' at {tracking.uri} has no finished units{which} to export; "
                        "run `adapterflow run` first or pass --config/--experiment")
    units = {unit_key_of(run): _unit_files(tracking, run, home / "artifact-cache") for run in runs}

    def write(tmp: Path) -> None:
        for key, (folder, record) in units.items():
            bundle_fitted_model(folder, write_unit(tmp, key, record) / ARTIFACT_PATH,
                                lambda source: relocated_unit_artifact(tracking, source, home / "artifact-cache"))
        write_manifest(tmp, list(units), experiment=tracking.experiment, exported_from=tracking.uri)

    try:
        atomic_directory_write(destination, write)
    except OSError as exc:
        raise DataError(f"cannot write export folder {destination} ({exc.strerror or exc}); "
                        "pass a folder you can write") from None
    return list(units)


def _store_folders(tracking: Tracking, home: Path) -> list[Path]:
    """The folders of the store an export reads: its home, and a SQLite tracking store's folder."""
    folders = [home]
    if tracking.uri.startswith("sqlite:///"):
        folders.append(Path(tracking.uri.removeprefix("sqlite:///")).parent)
    return folders


def _unit_files(tracking: Tracking, run, cache_dir: Path) -> tuple[Path, dict]:
    """A finished unit's fitted folder (checked loadable) and the record of its run."""
    folder = download_unit_artifact(tracking, run.info.run_id, ARTIFACT_PATH, cache_dir)
    check_artifact_files(folder)
    model_id = run_model_id(tracking, run.info.run_id)
    record = {"run_name": run.info.run_name, "run_id": run.info.run_id,
              "tags": {k: v for k, v in run.data.tags.items() if not k.startswith(PRIVATE_TAG_PREFIXES)},
              "params": dict(run.data.params), "metrics": dict(run.data.metrics),
              "example_rows": model_example_rows(tracking, model_id) if model_id else []}
    return folder, record


def import_units(tracking: Tracking, source: Path, backbone: str, registry_name: Callable[[str, str, str], str],
                 cache_dir: Path) -> dict[str, list[str]]:
    """Create a finished run for every exported unit the store lacks, after checking them all on
    `backbone`, and register their models as `registry_name(stage, task, method)` names them:
    {"imported": keys, "present": keys}."""
    units = read_export(Path(source))
    fingerprint = backbone_fingerprint(backbone)
    for unit in units:
        _check_made_on(unit, backbone, fingerprint)
    present = [u.key for u in units if _reusable(tracking, u.key, fingerprint, cache_dir)]
    new = [u for u in units if u.key not in present]
    with ExitStack() as runs:  # all FINISHED on leaving, or all FAILED if any import fails
        imported = [(unit, *_log_unit(tracking, unit, fingerprint, runs)) for unit in new]
    for unit, run_id, model_id in imported:
        tags = unit.record["tags"]
        name = registry_name(tags["stage"], tags["task"], tags["method"])
        register_model(tracking, run_id, model_id, name, "current")
    return {"imported": [u.key for u in new], "present": present}


def _check_made_on(unit: ExportedUnit, backbone: str, fingerprint: str) -> None:
    """The unit's files load, and every artifact in it was made on the backbone of `fingerprint`."""
    for folder, config in check_artifact_files(unit.folder / ARTIFACT_PATH).items():
        made_on = config.get("backbone") or {}
        if made_on.get("fingerprint") != fingerprint:
            raise DataError(f"unit {unit.label} of the export was made on backbone '{made_on.get('name')}' "
                            f"(fingerprint {made_on.get('fingerprint')}, {folder}), but this config's backbone "
                            f"'{backbone}' has fingerprint {fingerprint}; import it with a --config naming the "
                            "backbone it was made on")


def _reusable(tracking: Tracking, key: str, fingerprint: str, cache_dir: Path) -> bool:
    run, refusal = reusable_run(tracking, key, fingerprint, cache_dir)
    return run is not None and refusal is None


def _log_unit(tracking: Tracking, unit: ExportedUnit, fingerprint: str, runs: ExitStack) -> tuple[str, str]:
    """A RUNNING run holding the unit, entered into `runs`; returns (run id, model id)."""
    record, tags = unit.record, unit.record["tags"]
    extra = {k: v for k, v in tags.items() if k not in UNIT_TAGS} | {"imported_from": record["run_id"],
                                                                      BACKBONE_FINGERPRINT_TAG: fingerprint}
    run = runs.enter_context(UnitRun(tracking, None, record["run_name"], stage=tags["stage"], task=tags["task"],
                                     method=tags["method"], unit_key=unit.key, extra_tags=extra))
    for name, value in record["params"].items():
        run.client.log_param(run.run_id, name, value)
    run.log_metrics(record["metrics"])
    adapter = unit.folder / ARTIFACT_PATH
    run.log_folder(adapter, ARTIFACT_PATH)
    seed = record["params"].get("seed", "")
    name = logged_model_name(tags["stage"], tags["task"], tags["method"], int(seed) if seed.isdigit() else None)
    model_id = log_fitted_model(tracking, run.run_id, unit_targets(tags["task"], tags["method"], adapter),
                                record["example_rows"], name=name)
    return run.run_id, model_id
