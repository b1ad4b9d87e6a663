"""The pipeline end to end on a tiny model: Prefect flows, MLflow runs, reuse on a second run."""

from __future__ import annotations

import json
import time

import pytest

from flows.config import load_config
from flows.stages import run_stage
from peft_core.hyperformer.counting import hyperformer_parameter_count
from peft_core.hyperformer.hypernetwork import HyperNetConfig
from peft_core.errors import ConfigError
from tasks.reporting import comparison_table
from tasks.tracking import KIND_TAG, PARENT_TAG, RUNS_VIEW_KEY, SHARED_VIEW_TAG, Tracking, runs_view_urls
from flows.store import tracking_for


def _children(tracking: Tracking, parent_id: str):
    return tracking.client().search_runs([tracking.experiment_id()], f"tags.`{PARENT_TAG}` = '{parent_id}'",
                                         max_results=500)


def test_pipeline_tracks_every_unit_and_reuses_them(prefect_api, tiny_config):
    path, home = tiny_config()
    cfg = load_config(path)
    parent_id = run_stage(cfg, None)
    tracking = tracking_for(cfg)
    assert tracking.uri.startswith("sqlite:///") and str(home) in tracking.uri

    parent = tracking.client().get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[KIND_TAG] == "pipeline"
    children = _children(tracking, parent_id)
    by_stage = {}
    for run in children:
        assert {"stage", "task", "method", "unit_key"} <= set(run.data.tags)
        by_stage.setdefault(run.data.tags["stage"], []).append(run)
    assert {r.data.tags["task"] for r in by_stage["sources"]} == {"demo_sentiment", "demo_nli"}
    assert {r.data.tags["method"] for r in by_stage["transfer"]} == {"adapter", "scalearn", "average"}
    assert len(by_stage["evaluate"]) >= 2

    source_run = by_stage["sources"][0]
    # the unit's test score is what evaluating its saved artifact gives again
    evaluation = next(r for r in by_stage["evaluate"] if r.data.tags["evaluated_run_id"] == source_run.info.run_id)
    assert evaluation.data.metrics["test_accuracy"] == pytest.approx(source_run.data.metrics["test_accuracy"], abs=1e-6)
    assert 0 < source_run.data.metrics["test_accuracy"] <= 1
    history = tracking.client().get_metric_history(source_run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1]
    artifacts = {a.path for a in tracking.client().list_artifacts(source_run.info.run_id, "adapter")}
    assert artifacts == {"adapter/adapter_config.json", "adapter/adapter.safetensors"}
    registered = tracking.client().get_model_version_by_alias("flowtest.sources.demo_nli.adapter", "current")
    assert registered.run_id in {r.info.run_id for r in by_stage["sources"]}

    scalearn = next(r for r in by_stage["transfer"] if r.data.tags["method"] == "scalearn")
    names = {a.path for a in tracking.client().list_artifacts(scalearn.info.run_id)}
    assert "weights.json" in names
    fitted = {a.path for a in tracking.client().list_artifacts(scalearn.info.run_id, "adapter")}
    assert "adapter/weights.png" in fitted  # the unit draws the weights heatmap into the artifact it logs

    table = comparison_table(tracking, parent_id)
    assert set(table["method"]) >= {"adapter", "scalearn", "average"}
    assert {"test_accuracy", "trainable_params", "head_params", "wall_time_s", "peak_memory_mb"} <= set(table.columns)
    report = {a.path for a in tracking.client().list_artifacts(parent_id, "report")}
    assert report == {"report/comparison.md", "report/comparison.csv"}
    _assert_readable_names(tracking, by_stage)
    _assert_runs_view_shows_what_the_units_log(tracking, by_stage["transfer"])

    # A second run of the same config trains nothing: every unit is found in MLflow by its key.
    second_id = run_stage(cfg, None)
    second = [r for r in _children(tracking, second_id) if r.data.tags["stage"] in ("sources", "transfer")]
    assert second and all(r.data.tags.get("reused") == "true" for r in second)
    units = {run_id: {k: v for k, v in tracking.client().get_run(run_id).data.metrics.items() if k.startswith("units_")}
             for run_id in (parent_id, second_id)}
    assert units[parent_id] == {"units_trained": len(table), "units_reused": 0}
    assert units[second_id] == {"units_trained": 0, "units_reused": len(table)}

    # Forcing one stage retrains its units only.
    forced_id = run_stage(cfg.model_copy(update={"force_stages": ["transfer"]}), None)
    reused = {r.data.tags["stage"]: r.data.tags.get("reused") == "true" for r in _children(tracking, forced_id)
              if r.data.tags["stage"] in ("sources", "transfer")}
    assert reused == {"sources": True, "transfer": False}


def _assert_runs_view_shows_what_the_units_log(tracking: Tracking, units: list) -> None:
    """The MLflow UI opens the experiment's runs table at `runs_view_urls`' address with columns that
    every unit run fills: its stage, task, method, seed, main test metric, reuse and logged model."""
    experiment = tracking.client().get_experiment(tracking.experiment_id())
    view = json.loads(experiment.tags[SHARED_VIEW_TAG + RUNS_VIEW_KEY])
    assert view["orderByKey"] == "attributes.start_time" and view["orderByAsc"] is False
    columns = [c.split(".", 1) for c in view["selectedColumns"]]
    assert ["metrics", "`test_accuracy`"] in columns  # demo_sentiment's, demo_nli's and demo_lowres's main metric
    logged = {"tags": set.intersection(*(set(r.data.tags) for r in units)) | {"reused"},  # a reusing run's tag
              "params": set.intersection(*(set(r.data.params) for r in units)),
              "metrics": set.intersection(*(set(r.data.metrics) for r in units)), "attributes": {"Models"}}
    assert all(name.strip("`") in logged[group] for group, name in columns), columns
    assert runs_view_urls(tracking.uri, "http://127.0.0.1:5000") == {
        experiment.name: f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}?viewStateShareKey=adapterflow"}


def _assert_readable_names(tracking: Tracking, by_stage: dict) -> None:
    """MLflow runs, logged models and Prefect flow and task runs named after what they train."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, TaskRunFilter, TaskRunFilterName

    assert {r.info.run_name for r in by_stage["transfer"]} == {f"demo_lowres/{method} seed 42 (transfer)"
                                                                for method in ("adapter", "scalearn", "average")}
    logged = {m.name for m in tracking.client().search_logged_models([tracking.experiment_id()])}
    assert {"sources-demo_nli-adapter-seed42", "demo_lowres-adapter-seed42", "demo_lowres-scalearn-seed42"} <= logged
    task_runs = ["fit_transfer demo_lowres/scalearn seed 42 (transfer)", "train_adapter demo_nli/adapter seed 42 (sources)",
                 "train_adapter demo_lowres/adapter seed 42 (transfer)",
                 "evaluate_adapter demo_nli/adapter seed 42 (evaluate)"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["pipeline flowtest"])))
        deadline = time.monotonic() + 30  # task runs are recorded from their events, a moment later
        while True:
            found = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=task_runs)))
            if {r.name for r in found} == set(task_runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert {r.name for r in found} == set(task_runs)


def test_transfer_stage_alone_names_missing_sources(prefect_api, tiny_config):
    path, _ = tiny_config(name="no-sources-yet")
    with pytest.raises(ConfigError, match=r"no source adapter .*demo_sentiment.*--stage sources"):
        run_stage(load_config(path), "transfer")


def test_multitask_stage_alone_reports_a_row_per_task(prefect_api, tiny_config):
    path, _ = tiny_config(name="joint", methods=["hyperformer_plus_plus"])
    cfg = load_config(path)
    run_stage(cfg, "multitask")
    table = comparison_table(tracking_for(cfg))
    rows = table[table["stage"] == "multitask"]
    assert set(rows["task"]) == {"demo_sentiment", "demo_nli", "demo_lowres"}
    assert set(rows["method"]) == {"hyperformer_plus_plus"}
    # the joint model's count on every row: the tiny BERT (d 32, 2 layers), 3 tasks, r = 4, its LayerNorms
    expected = hyperformer_parameter_count(32, 2, 3, 4, HyperNetConfig(), layernorm_params=(2 * 2 + 1) * 2 * 32)
    assert (rows["trainable_params"] == expected["total"]).all() and rows["test_accuracy"].notna().all()


def test_report_of_a_run_without_units_is_empty_not_an_error(prefect_api, tiny_config):
    from tasks.report_publishing import publish_report
    from tasks.tracking import start_pipeline_run

    cfg = load_config(tiny_config()[0])
    tracking = tracking_for(cfg)
    parent = start_pipeline_run(tracking, cfg.model_dump(mode="json"), "empty")
    assert publish_report(tracking, parent) == "_no finished units_"


def test_few_shot_seeds_draw_their_own_sample_and_the_report_gives_intervals(prefect_api, tiny_config):
    """data.few_shot per seed; sources trained once (source_seeds); the own adapter is the target's
    no-transfer adapter, whose head ScaLearn's starts from; the report's gains carry a bootstrap
    interval over the seeds."""
    from tasks.reporting import transfer_summary

    path, _ = tiny_config(name="fewshot", data={"source": "demo", "max_train": 48, "max_eval": 24,
                                                "few_shot": {"k": 8}},
                          seeds=[1, 2], source_seeds=[7], methods=["adapter", "scalearn"],
                          transfer={"head_init": {"scalearn": "own"}})
    cfg = load_config(path)
    run_stage(cfg, None)
    tracking = tracking_for(cfg)
    table = comparison_table(tracking)
    sources = table[table["stage"] == "sources"]
    assert sorted(sources["seed"]) == [7, 7]  # two source tasks, trained once
    fits = table[table["stage"] == "transfer"]
    assert sorted(zip(fits["method"], fits["seed"])) == [("adapter", 1), ("adapter", 2), ("scalearn", 1), ("scalearn", 2)]
    digests = {tracking.client().get_run(r).data.params["data_digest"] for r in fits[fits["method"] == "adapter"]["run_id"]}
    assert len(digests) == 2  # each seed its own few-shot sample
    scalearn = tracking.client().get_run(fits[fits["method"] == "scalearn"]["run_id"].iloc[0]).data.params
    assert json.loads(scalearn["sources"]) == ["demo_sentiment", "demo_nli", "demo_lowres"]  # others + the own adapter
    assert scalearn["head_from"] == "demo_lowres"  # its head started from the own adapter's
    [line] = transfer_summary(table, tracking)
    assert line.startswith("demo_lowres, test accuracy, mean ± std over 2 seeds") and "scalearn" in line
    assert "gain " in line and "[" in line  # the paired gain with its interval
