"""Fitted units as MLflow models, and the datasets they were trained and evaluated on.

A unit's model is the pyfunc of `tasks/pyfunc_model.py` logged from code (no pickle) with its
targets as one self-contained artifact (safetensors + JSON, sources bundled), `peft_core` as its
code, a signature and an input example. It is a LoggedModel of the unit's run (the MLflow UI's
"Models" column), registered with an alias, so `mlflow models serve -m models:/<name>@current`
answers from any folder. Everything goes through the client API, never the fluent active run:
units run in parallel threads. Finding a logged unit's targets again is `tasks.model_targets`'.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema

import peft_core
from peft_core.inference import fitted_spec
from peft_core.inputs import input_fields
from peft_core.model_set import KEY_FIELDS, save_model_set
from peft_core.model_set_files import Target
from tasks.model_targets import TARGETS_ARTIFACT
from tasks.prepared_data import SPLITS, load_splits
from tasks.unit_specs import PreparedData
from tasks.tracking import Tracking

MODEL_NAME = "model"
CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
REQUIREMENTS = ("torch", "transformers", "safetensors", "mlflow", "pandas")
DATASET_CONTEXT = "mlflow.data.context"
EXAMPLE_ROWS = 2  # per task
EXAMPLE_FILE = "input_example.json"  # where MLflow saves a model's input example


def example_rows(targets: Mapping[str, Target], prepared: Sequence[PreparedData]) -> list[dict]:
    """A few validation rows of each target's task, with the column that picks the target."""
    folders = {data.task: data.folder for data in prepared}
    rows = []
    for name, target in targets.items():
        spec = _target_spec(target)
        if spec.name not in folders:
            continue
        for example in load_splits(folders[spec.name]).validation[:EXAMPLE_ROWS]:
            row = dict(zip(input_fields(spec), example.texts + example.choices))
            rows.append(row if len(targets) == 1 else {KEY_FIELDS[0]: name, **row})
    return rows


def _target_spec(target: Target):
    folder, task = target if isinstance(target, tuple) else (target, None)
    return fitted_spec(Path(folder), task)


def signature(targets: Mapping[str, Target]) -> ModelSignature:
    """Every target's input fields as strings; with several targets each is optional, beside the
    `model` and `task` columns that pick a row's target (MLflow drops columns a signature lacks)."""
    several = len(targets) > 1
    fields = dict.fromkeys(f for t in targets.values() for f in input_fields(_target_spec(t)))
    columns = [ColSpec("string", key, required=False) for key in KEY_FIELDS] if several else []
    columns += [ColSpec("string", field, required=not several) for field in fields]
    return ModelSignature(inputs=Schema(columns))


def log_fitted_model(tracking: Tracking, run_id: str, targets: Mapping[str, Target], rows: list[dict],
                     name: str = MODEL_NAME) -> str:
    """Log `targets` as one pyfunc model of run `run_id` (shown as `name`); returns the LoggedModel id."""
    client = tracking.client()
    logged = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=name,
                                        source_run_id=run_id, model_type="adapterflow",
                                        tags={"targets": json.dumps(sorted(targets))})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = save_model_set(targets, Path(tmp) / TARGETS_ARTIFACT)
            mlflow.pyfunc.save_model(
                Path(tmp) / MODEL_NAME, python_model=str(CODE_FILE), artifacts={TARGETS_ARTIFACT: str(bundle)},
                code_paths=[str(Path(peft_core.__file__).parent)], signature=signature(targets),
                input_example=pd.DataFrame(rows) if rows else None,
                pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
                mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id,
                                   model_uuid=logged.model_id, model_id=logged.model_id),
            )
            client.log_model_artifacts(logged.model_id, str(Path(tmp) / MODEL_NAME))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged.model_id


def register_model(tracking: Tracking, run_id: str, model_id: str, name: str, alias: str) -> str:
    """A new version of registered model `name` for the logged model, with `alias` pointing at it."""
    client = tracking.client()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # already registered
    # The model's artifact location, not "models:/<id>": a SQLite registry resolves that through the
    # process-wide tracking URI, which is not this store's.
    source = client.get_logged_model(model_id).artifact_location
    created = client.create_model_version(name, source, run_id=run_id, model_id=model_id)
    client.set_registered_model_alias(name, alias, created.version)
    return created.version


def model_example_rows(tracking: Tracking, model_id: str) -> list[dict]:
    """The input example a logged model was saved with, as rows (none if it has none)."""
    location = tracking.client().get_logged_model(model_id).artifact_location
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{EXAMPLE_FILE}", dst_path=tmp,
                                                       tracking_uri=tracking.uri)
        except (OSError, mlflow.exceptions.MlflowException):
            return []
        example = json.loads(Path(path).read_text())  # pandas "split" orient: columns and data
    return [dict(zip(example["columns"], values)) for values in example["data"]]


def log_datasets(tracking: Tracking, run_id: str, prepared: Sequence[PreparedData]) -> None:
    """Link the run to each split of its prepared data, named `<task>-<split>`, by content digest."""
    inputs = []
    for data in prepared:
        manifest = json.loads((Path(data.folder) / "manifest.json").read_text())
        for split in SPLITS:
            if manifest["sizes"][split]:
                dataset = Dataset(f"{data.task}-{split}", manifest["digests"][split], "local",
                                  json.dumps({"uri": (Path(data.folder) / f"{split}.jsonl").as_uri()}),
                                  profile=json.dumps({"num_rows": manifest["sizes"][split]}))
                inputs.append(DatasetInput(dataset, [InputTag(DATASET_CONTEXT, split)]))
    if inputs:
        tracking.client().log_inputs(run_id, datasets=inputs)
