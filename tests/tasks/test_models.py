"""Fitted units as MLflow models: logged from code, registered, loaded back by MLflow, same answers."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from peft_core.backbones import load_backbone
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data import load_task_data
from peft_core.inference import load_fitted_model, predict
from peft_core.adapter_jobs import train_adapter
from peft_core.task_specs import get_task
from peft_core.transfer import fit_transfer
from tasks.unit_specs import PreparedData
from tasks.model_targets import download_model_targets, run_model_id, unit_targets
from tasks.models import example_rows, log_datasets, log_fitted_model, register_model
from tasks.prepared_data import save_splits
from tasks.tracking import Tracking

SENTIMENT, NLI = get_task("demo_sentiment"), get_task("demo_nli")
FAST = TrainConfig(epochs=1, batch_size=8, eval_batch_size=8, max_length=24)
ROWS = [{"sentence": "the film was good"}, {"sentence": "the meal was not bad at all"}]


@pytest.fixture(scope="module")
def fitted(tiny_backbone_dir, tmp_path_factory):
    """A ScaLearn fit over two sources, its prepared data, and the backbone it was fitted on."""
    root = tmp_path_factory.mktemp("fitted")
    backbone = load_backbone(str(tiny_backbone_dir))
    data = {spec.name: load_task_data(spec, "demo", max_train=16, max_eval=8) for spec in (SENTIMENT, NLI)}
    for spec in (SENTIMENT, NLI):
        train_adapter(backbone, spec, data[spec.name], AdapterConfig(reduction_factor=4), FAST, root / spec.name)
    fit_transfer(backbone, SENTIMENT, data["demo_sentiment"], "scalearn", [root / "demo_sentiment", root / "demo_nli"],
                 FAST, root / "fit")
    save_splits(root / "data", data["demo_sentiment"])
    prepared = PreparedData(SENTIMENT.name, str(root / "data"), "", SENTIMENT.to_json(), {}, "source")
    return root / "fit", prepared, backbone


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "models-test", (tmp_path / "artifacts").as_uri())


def test_a_unit_is_an_mlflow_model_that_answers_like_peft_core(fitted, tracking, tmp_path):
    folder, prepared, backbone = fitted
    client = tracking.client()
    run_id = client.create_run(tracking.experiment_id()).info.run_id
    targets = unit_targets("demo_sentiment", "scalearn", folder)
    model_id = log_fitted_model(tracking, run_id, targets, example_rows(targets, [prepared]))
    log_datasets(tracking, run_id, [prepared])
    register_model(tracking, run_id, model_id, "models-test.demo_sentiment.scalearn", "current")

    run = client.get_run(run_id)
    assert run_model_id(tracking, run_id) == model_id
    assert str(client.get_logged_model(model_id).status) == "READY"
    digests = json.loads((folder.parent / "data" / "manifest.json").read_text())["digests"]
    logged = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert logged == {f"demo_sentiment-{split}": digests[split] for split in ("train", "validation", "test")}

    model = mlflow.pyfunc.load_model("models:/models-test.demo_sentiment.scalearn@current")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["sentence"]
    assert model.metadata.saved_input_example_info is not None
    served = model.predict(pd.DataFrame(ROWS))
    alone = load_fitted_model(folder, backbone)
    assert served == predict(alone, ROWS)
    alone.close()

    downloaded = download_model_targets(tracking, model_id, tmp_path / "cache")
    assert list(downloaded) == ["demo_sentiment/scalearn"]
    ((bundle, _),) = downloaded.values()
    assert sorted(p.name for p in (bundle / "sources").iterdir()) == ["demo_nli", "demo_sentiment"]
