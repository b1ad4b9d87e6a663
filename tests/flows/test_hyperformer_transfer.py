"""HyperFormer++ few-shot transfer in the pipeline: a joint model of the sources, then one fit per
target and seed over it, found again in MLflow by its key."""

from __future__ import annotations

import json

import pytest

from flows.config import load_config
from flows.stages import run_stage
from peft_core.errors import ConfigError
from peft_core.method_names import ALL_METHODS
from tasks.reporting import comparison_table, latest_pipeline_run
from tasks.tracking import PARENT_TAG, Tracking
from flows.store import tracking_for

METHOD = "hyperformer_plus_plus_few_shot"


def _children(tracking: Tracking, parent_id: str):
    return tracking.client().search_runs([tracking.experiment_id()], f"tags.`{PARENT_TAG}` = '{parent_id}'",
                                         max_results=500)


def test_the_method_and_its_options_are_validated(tiny_config):
    assert METHOD in ALL_METHODS
    cfg = load_config(tiny_config(methods=[METHOD], transfer={
        "options": {METHOD: {"init_from": "demo_nli", "train_hypernetwork": True}},
        "learning_rate": {METHOD: 0.003}})[0])
    assert cfg.hyperformer_transfer_tasks() == ["demo_sentiment", "demo_nli"]
    for transfer, message in [
        ({"options": {METHOD: {"init_from": "demo_lowres"}}}, "init_from 'demo_lowres' is not a source task"),
        ({"options": {METHOD: {"init_from": {"demo_lowres": "demo_lowres"}}}},
         r"transfer.options.hyperformer_plus_plus_few_shot.init_from.demo_lowres 'demo_lowres' is not a source task "
         r"of its joint model \(a source that is not a target\); use 'mean' or one of: demo_sentiment, demo_nli"),
        ({"options": {METHOD: {"init_from": {"default": "rte"}}}}, "init_from.default 'rte' is not a source task"),
        ({"options": {METHOD: {"init_from": {"demo_nli": "demo_sentiment"}}}},
         r"init_from names 'demo_nli', not a target of this config; give one entry per target \(demo_lowres\) or "
         "'default'"),
        ({"options": {METHOD: {"init_from": {"demo_lowres": ["demo_nli"]}}}}, "init_from must be a source task's name"),
        ({"options": {METHOD: {"train_hypernetwork": "sometimes"}}}, "train_hypernetwork must be true or false"),
        ({"options": {METHOD: {"omega_dropout": 0.1}}}, r"no option\(s\) \['omega_dropout'\]"),
        ({"source_set": {METHOD: "all"}}, "transfer.source_set has unknown method"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(tiny_config(methods=[METHOD], transfer=transfer)[0])
    with pytest.raises(ConfigError, match="needs source tasks that are not targets"):
        load_config(tiny_config(methods=[METHOD], sources=["demo_lowres"])[0])


def test_a_fits_key_holds_its_own_targets_init_from_and_what_trains(tiny_config):
    """Per-target init_from: a fit's key and params hold the task its target starts from, so naming
    another target's task leaves it; the default (the hypernetwork trains) is in the key."""
    from flows.unit_plans import transfer_plan
    from tasks.unit_specs import PreparedData

    def key(options: dict, target: str = "demo_lowres") -> str:
        cfg = load_config(tiny_config(methods=[METHOD], transfer={"options": {METHOD: options}})[0])
        prepared = {"source": {t: PreparedData(t, "", "d0", {}, {"train": 48}, "source") for t in cfg.sources},
                    "target": {target: {42: PreparedData(target, "", "d1", {}, {"train": 8}, "target", 42)}}}
        return transfer_plan(cfg, prepared).few_shot_fits[0].key

    plain = key({"init_from": "demo_nli"})
    assert key({"init_from": {"demo_lowres": "demo_nli", "default": "mean"}}) == plain
    assert key({"init_from": {"default": "demo_nli"}}) == plain
    assert key({"init_from": "demo_nli", "train_hypernetwork": True}) == plain  # the default
    assert len({plain, key({"init_from": "demo_sentiment"}), key({"init_from": "demo_nli", "train_hypernetwork": False}),
                key({})}) == 4


def test_fits_per_seed_over_one_joint_model_of_the_sources_reused_from_mlflow(prefect_api, tiny_config):
    options = {"init_from": {"demo_lowres": "demo_nli"}}
    changes = dict(methods=[METHOD], seeds=[1, 2], source_seeds=[42], transfer={"options": {METHOD: options}},
                   data={"source": "demo", "max_train": 48, "max_eval": 24, "few_shot": {"k": 8}})
    cfg = load_config(tiny_config(**changes)[0])
    tracking = tracking_for(cfg)
    parent_id = run_stage(cfg, None)

    runs = _children(tracking, parent_id)
    joint = [r for r in runs if r.data.tags["stage"] == "multitask-joint"]
    fits = [r for r in runs if r.data.tags["stage"] == "transfer"]
    assert [r.data.tags["task"] for r in joint] == ["demo_nli+demo_sentiment"]  # the target is new to it
    assert joint[0].data.tags["method"] == "hyperformer_plus_plus"
    assert sorted((r.data.tags["task"], r.data.tags["method"], r.data.params["seed"]) for r in fits) == \
        [("demo_lowres", METHOD, "1"), ("demo_lowres", METHOD, "2")]
    assert all(r.data.params["joint_unit_key"] == joint[0].data.tags["unit_key"] for r in fits)
    local = tracking.client().download_artifacts(fits[0].info.run_id, "few_shot.json")
    with open(local) as handle:
        record = json.load(handle)
    assert record["init_from"] == "demo_nli" and record["trained"] == ["task_embedding", "head", "hypernetwork",
                                                                       "backbone_layernorms"]
    params = fits[0].data.params
    assert (params["options.init_from"], params["options.train_hypernetwork"]) == ("demo_nli", "True")
    assert set(record["joint_model"]["tasks"]) == {"demo_sentiment", "demo_nli"}
    table = comparison_table(tracking, parent_id)
    assert "multitask" not in set(table["stage"])  # a joint model that is only a source has no report rows
    rows = table[table["method"] == METHOD]
    assert len(rows) == 2 and rows["test_accuracy"].notna().all()

    # Other options: new fits over the same joint model, which is reused from MLflow.
    options["init_from"] = "mean"
    again = load_config(tiny_config(**changes)[0])
    run_stage(again, "transfer")  # the stage alone, under its own parent run
    second = _children(tracking, latest_pipeline_run(tracking).info.run_id)
    reused = sorted((r.data.tags["stage"], r.data.tags.get("reused") == "true") for r in second)
    assert reused == [("multitask-joint", True), ("transfer", False), ("transfer", False)]
