"""Finished units carried between MLflow stores: a folder of safetensors + JSON, no MLflow inside.

    <folder>/manifest.json                      what was exported, from where
    <folder>/units/<unit key>/unit.json         the run's tags, params and metrics
    <folder>/units/<unit key>/adapter/          its fitted folder, source adapters bundled

Importing creates one FINISHED run per unit that the store does not hold yet, tagged with the
unit's key, with its adapter folder, its MLflow model and registered name: the pipeline's lookup
by key (`find_finished_unit`) then reuses it instead of training, on a new machine or a
colleague's store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from peft_core.checkpoints import atomic_directory_write
from peft_core.errors import DataError
from peft_core.inference import bundle_fitted_model
from tasks.models import log_fitted_model, model_example_rows, register_model, run_model_id, unit_targets
from tasks.tracking import (KIND_TAG, LEGACY_UNIT_KEY_TAG, UNIT_KEY_TAG, Tracking, UnitRun, download_unit_artifact,
                            find_finished_unit, unit_key_of)
from tasks.units import ARTIFACT_PATH

FORMAT = 1
MANIFEST = "manifest.json"
UNIT_FILE = "unit.json"
UNIT_TAGS = ("stage", "task", "method", UNIT_KEY_TAG, LEGACY_UNIT_KEY_TAG)  # what UnitRun sets from its arguments
PRIVATE_TAG_PREFIXES = ("mlflow.", "adapterflow.")  # run bookkeeping of the exporting store


def finished_units(tracking: Tracking, stages: Sequence[str] = ()) -> list:
    """The newest FINISHED run of every unit key that trained and kept an artifact (reuse records left out)."""
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        return []
    client = tracking.client()
    runs = client.search_runs([exp_id], f"tags.`{KIND_TAG}` = 'unit' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50000)
    newest = {}
    for run in runs:
        tags = run.data.tags
        if tags.get("reused") == "true" or (stages and tags.get("stage") not in stages):
            continue
        if unit_key_of(run) not in newest and client.list_artifacts(run.info.run_id, ARTIFACT_PATH):
            newest[unit_key_of(run)] = run
    return list(newest.values())


def export_units(tracking: Tracking, destination: Path, cache_dir: Path, stages: Sequence[str] = ()) -> list[str]:
    """Write every finished unit (of `stages`, if given) into `destination`; returns their keys."""
    runs = finished_units(tracking, stages)
    if not runs:
        which = f" of stage(s) {', '.join(stages)}" if stages else ""
        raise DataError(f"experiment '{tracking.experiment}' at {tracking.uri} has no finished units{which} to export; "
                        "run `adapterflow run` first or pass --config/--experiment")

    def write(tmp: Path) -> None:
        for run in runs:
            unit = tmp / "units" / unit_key_of(run)
            folder = download_unit_artifact(tracking, run.info.run_id, ARTIFACT_PATH, cache_dir)
            bundle_fitted_model(folder, unit / ARTIFACT_PATH)
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith(PRIVATE_TAG_PREFIXES)}
            model_id = run_model_id(tracking, run.info.run_id)
            record = {"run_name": run.info.run_name, "run_id": run.info.run_id, "tags": tags,
                      "params": dict(run.data.params), "metrics": dict(run.data.metrics),
                      "example_rows": model_example_rows(tracking, model_id) if model_id else []}
            (unit / UNIT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
        manifest = {"format": FORMAT, "experiment": tracking.experiment, "exported_from": tracking.uri,
                    "units": [unit_key_of(run) for run in runs]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))

    atomic_directory_write(Path(destination), write)
    return [unit_key_of(run) for run in runs]


def import_units(tracking: Tracking, source: Path, registry_name: Callable[[str, str], str]) -> dict[str, list[str]]:
    """Create a finished run for every exported unit the store lacks: {"imported": keys, "present": keys}."""
    manifest = _read_manifest(Path(source))
    done: dict[str, list[str]] = {"imported": [], "present": []}
    for key in manifest["units"]:
        unit = Path(source) / "units" / key
        if find_finished_unit(tracking, key) is not None:
            done["present"].append(key)
            continue
        record = json.loads((unit / UNIT_FILE).read_text())
        tags = record["tags"]
        extra = {k: v for k, v in tags.items() if k not in UNIT_TAGS} | {"imported_from": record["run_id"]}
        with UnitRun(tracking, None, record["run_name"], stage=tags["stage"], task=tags["task"],
                     method=tags["method"], unit_key=key, extra_tags=extra) as run:
            for name, value in record["params"].items():
                run.client.log_param(run.run_id, name, value)
            run.log_metrics(record["metrics"])
            run.log_folder(unit / ARTIFACT_PATH, ARTIFACT_PATH)
            targets = unit_targets(tags["task"], tags["method"], unit / ARTIFACT_PATH)
            model_id = log_fitted_model(tracking, run.run_id, targets, record["example_rows"])
            register_model(tracking, run.run_id, model_id, registry_name(tags["task"], tags["method"]), "current")
        done["imported"].append(key)
    return done


def _read_manifest(source: Path) -> dict:
    path = source / MANIFEST
    if not path.is_file():
        raise DataError(f"{source} is not an adapterflow export (no {MANIFEST}); pass a folder `adapterflow export` wrote")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path} has export format {manifest.get('format')}, this version reads {FORMAT}; "
                        "export again with this version")
    missing = [key for key in manifest["units"] if not (source / "units" / key / UNIT_FILE).is_file()]
    if missing:
        raise DataError(f"{source}: units {', '.join(missing)} are missing their {UNIT_FILE}; export again")
    return manifest

