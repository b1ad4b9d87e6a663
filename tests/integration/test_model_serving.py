"""`mlflow models serve` on what the pipeline registered: a real server process on 127.0.0.1, run
from another folder after the pipeline's own artifact folders are gone, answers /invocations
with the predictions that scored the recorded test metrics; a model of several targets answers
rows of mixed targets from one process."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from flows.config import load_config
from flows.stages import run_stage
from peft_core.inference import score_predictions
from peft_core.inputs import input_fields
from peft_core.task_specs import get_task
from tasks.models import example_rows, log_fitted_model, register_model
from tasks.unit_specs import PreparedData
from tasks.prepared_data import load_splits
from flows.store import tracking_for
from tests.helpers.processes import answers, free_port, start_process, wait_for

MLFLOW = str(Path(sys.executable).parent / "mlflow")
TARGET, SOURCE = get_task("demo_lowres"), get_task("demo_nli")


def _serve(started, model_uri: str, tracking_uri: str, folder: Path) -> str:
    """Start `mlflow models serve` in `folder`; returns its URL once /ping answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ADAPTERFLOW_HOME"} | {"MLFLOW_TRACKING_URI": tracking_uri}
    env["PATH"] = f"{Path(MLFLOW).parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `uvicorn` from PATH
    log = folder / f"serve-{port}.log"
    server = start_process(started, [MLFLOW, "models", "serve", "-m", model_uri, "--env-manager", "local",
                              "--host", "127.0.0.1", "--port", str(port)], env, log, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{url}/ping") or server.poll() is not None, 180, "no /ping answer", log)
    assert server.poll() is None, log.read_text()[-3000:]
    return url


def _invoke(url: str, rows: list[dict]) -> list[dict]:
    request = urllib.request.Request(f"{url}/invocations", json.dumps({"dataframe_records": rows}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"]


def _test_rows(home: Path, spec, with_labels: bool = False) -> list[dict]:
    (folder,) = [d for d in (home / "data").iterdir() if d.name.startswith(f"{spec.name}-")]
    rows = []
    for example in load_splits(folder).test:
        row = dict(zip(input_fields(spec), example.texts))
        if with_labels:
            row["label"] = spec.label_names[example.label]
        rows.append(row)
    return rows


def test_registered_models_are_served_by_mlflow(prefect_api, tiny_config, tmp_path, started):
    config, home = tiny_config(sources=["demo_sentiment", "demo_nli"], methods=["scalearn"])
    cfg = load_config(config)
    run_stage(cfg, None)
    tracking = tracking_for(cfg)
    client = tracking.client()
    (fit,) = client.search_runs([tracking.experiment_id()], "tags.stage = 'transfer' and tags.method = 'scalearn'")
    (source,) = client.search_runs([tracking.experiment_id()], "tags.stage = 'sources' and tags.task = 'demo_nli'")

    # A model of two targets, as a user would log one: the ScaLearn fit and a source adapter.
    targets = {"demo_lowres/scalearn": home / "artifact-cache" / fit.info.run_id / "adapter",
               "demo_nli/adapter": home / "artifact-cache" / source.info.run_id / "adapter"}
    prepared = [PreparedData(s.name, str(next((home / "data").glob(f"{s.name}-*"))), "", s.to_json(), {}, "source")
                for s in (TARGET, SOURCE)]
    mixed_id = log_fitted_model(tracking, fit.info.run_id, targets, example_rows(targets, prepared))
    register_model(tracking, fit.info.run_id, mixed_id, "flowtest.mixed", "current")

    # What a served model needs is inside it: the folders the fit recorded its sources by are gone.
    rows = _test_rows(home, TARGET, with_labels=True)
    nli_rows = _test_rows(home, SOURCE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(home / "artifact-cache")

    url = _serve(started, "models:/flowtest.demo_lowres.scalearn@current", tracking.uri, elsewhere)
    answers = _invoke(url, [{k: v for k, v in row.items() if k != "label"} for row in rows])
    assert len(answers) == len(rows)
    recorded = client.get_run(fit.info.run_id).data.metrics
    assert score_predictions(TARGET, rows, answers) == {m: recorded[f"test_{m}"] for m in TARGET.metrics}
    assert all(set(a) == {"label", "score", "probabilities"} for a in answers)

    url = _serve(started, "models:/flowtest.mixed@current", tracking.uri, elsewhere)
    mixed = [{"model": "demo_nli/adapter", **row} for row in nli_rows[:3]]
    mixed += [{"model": "demo_lowres/scalearn", **{k: v for k, v in row.items() if k != "label"}} for row in rows]
    mixed_answers = _invoke(url, mixed)
    assert mixed_answers[3:] == answers
    assert all(a["label"] in SOURCE.label_names for a in mixed_answers[:3])
