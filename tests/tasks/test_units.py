"""The unit skeleton (tasks/units.py run_training_unit): a finished unit is reused by key, on the backbone
it ran on only, --force-stage retrains its stage's units, a failing unit is marked FAILED and never
reused, two callers of one key train it once, and runs of older stores (tagged `adapter_key`) are
still found."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

import tasks.units as units
from flows.config import PipelineConfig
from flows.unit_plans import unit_context
from peft_core.jobs import TrainingResult
from tasks.unit_specs import UnitSpec
from tasks.stage_table import JOINT_MODEL_TAG
from tasks.tracking import (BACKBONE_FINGERPRINT_TAG, KIND_TAG, LEGACY_UNIT_KEY_TAG, UNIT_KEY_TAG, Tracking,
                            find_finished_unit)
from flows.store import tracking_for


class _Silent:
    def __init__(self, label):
        self.on_epoch = self.on_step = lambda *args: None


@pytest.fixture
def cfg(tmp_path, monkeypatch, tiny_backbone_dir):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ADAPTERFLOW_HOME", raising=False)
    monkeypatch.setattr(units, "TrainingProgress", _Silent)  # no Prefect API needed
    return PipelineConfig(name="units", home=str(tmp_path / "home"), backbone=str(tiny_backbone_dir))


@dataclass(frozen=True)
class KeyedUnit(UnitSpec):
    """A unit of a given key and stage whose only input is its seed (the skeleton reads no more)."""

    backbone: str
    given_key: str
    stage: str
    task = "demo_sentiment"
    method = "adapter"
    seed = 1
    datasets = ()

    @property
    def key(self) -> str:
        return self.given_key

    def inputs(self) -> dict:
        return {"seed": self.seed}

    def described(self) -> dict:
        return {}  # no data to describe


class Trainer:
    """A unit's job that records its calls and returns fixed metrics (no artifact)."""

    def __init__(self, fail: bool = False, seconds: float = 0.0):
        self.calls, self.fail, self.seconds = 0, fail, seconds

    def __call__(self, spec, backbone, out, hooks) -> TrainingResult:
        self.calls += 1
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("diverged")
        return TrainingResult({"validation_accuracy": 0.75, "test_accuracy": 0.5}, [], 1, 0.1, 1.0, 10, 2)


def _run(cfg, train, key="adapter-0123", stage="sources"):
    return units.run_training_unit(unit_context(cfg, None), KeyedUnit(cfg.backbone, key, stage), train)


def _statuses(cfg, key):
    tracking = tracking_for(cfg)
    runs = tracking.client().search_runs([tracking.experiment_id()], f"tags.`{UNIT_KEY_TAG}` = '{key}'")
    return sorted(r.info.status for r in runs)


def test_a_finished_unit_is_reused_with_its_metrics_and_a_child_run(cfg):
    train = Trainer()
    first = _run(cfg, train)
    again = _run(cfg, train)
    assert train.calls == 1 and not first.reused and again.reused
    assert again.metrics["test_accuracy"] == first.metrics["test_accuracy"] == 0.5
    assert first.metrics["trainable_params"] == 10 and first.metrics["head_params"] == 2
    assert again.run_id != first.run_id  # the reuse is recorded as its own run
    assert find_finished_unit(tracking_for(cfg), "adapter-0123").info.run_id == again.run_id
    # the reuse's run shows the params beside its metrics and says where the unit's files are, with a link
    reuse = tracking_for(cfg).client().get_run(again.run_id)
    assert reuse.data.params == {"seed": "1"} == tracking_for(cfg).client().get_run(first.run_id).data.params
    assert f"#/experiments/{reuse.info.experiment_id}/runs/{first.run_id})" in reuse.data.tags["mlflow.note.content"]


def test_a_unit_finished_on_another_checkpoint_of_the_backbone_is_trained_again(cfg, caplog):
    train = Trainer()
    first = _run(cfg, train)
    client = tracking_for(cfg).client()
    assert client.get_run(first.run_id).data.tags[BACKBONE_FINGERPRINT_TAG] == units.backbone_fingerprint(cfg.backbone)
    client.set_tag(first.run_id, BACKBONE_FINGERPRINT_TAG, "0" * 16)  # the same name once held other weights
    again = _run(cfg, train)
    assert train.calls == 2 and not again.reused
    assert f"not reusing finished run {first.run_id} (it ran on a backbone of fingerprint {'0' * 16}" in caplog.text
    assert _run(cfg, train).reused and train.calls == 2


def test_force_stage_retrains_that_stages_units_only(cfg):
    train = Trainer()
    _run(cfg, train, stage="sources")
    _run(cfg, train, key="multitask-0123", stage=JOINT_MODEL_TAG)
    forced = cfg.model_copy(update={"force_stages": ["transfer"]})
    assert _run(forced, train).reused and train.calls == 2
    forced = cfg.model_copy(update={"force_stages": ["sources", "multitask"]})
    assert not _run(forced, train).reused
    assert not _run(forced, train, key="multitask-0123", stage=JOINT_MODEL_TAG).reused  # a joint model's own run
    assert train.calls == 4


def test_a_failing_unit_is_marked_failed_and_trained_again_next_time(cfg):
    with pytest.raises(RuntimeError, match="diverged"):
        _run(cfg, Trainer(fail=True))
    assert _statuses(cfg, "adapter-0123") == ["FAILED"]
    assert find_finished_unit(tracking_for(cfg), "adapter-0123") is None
    train = Trainer()
    assert not _run(cfg, train).reused and train.calls == 1
    assert _statuses(cfg, "adapter-0123") == ["FAILED", "FINISHED"]


def test_two_callers_of_one_key_train_it_once(cfg):
    train = Trainer(seconds=1.0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_run(cfg, train))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert train.calls == 1 and sorted(r.reused for r in results) == [False, True]


def test_runs_of_older_stores_tagged_adapter_key_are_reused(cfg):
    tracking = tracking_for(cfg)
    client = tracking.client()
    old = client.create_run(tracking.experiment_id(), tags={KIND_TAG: "unit", "stage": "sources",
                                                             LEGACY_UNIT_KEY_TAG: "adapter-0123"})
    client.log_metric(old.info.run_id, "test_accuracy", 0.625)
    client.set_terminated(old.info.run_id, "FINISHED")
    train = Trainer()
    reused = _run(cfg, train)
    assert train.calls == 0 and reused.reused and reused.metrics["test_accuracy"] == 0.625
    assert client.get_run(reused.run_id).data.tags["artifact_run_id"] == old.info.run_id


def test_each_kind_of_unit_has_its_own_registered_and_logged_model_name(cfg):
    names = {stage: units.registry_name(cfg.experiment_name(), stage, "demo_lowres", "adapter")
             for stage in ("sources", "transfer", JOINT_MODEL_TAG)}
    assert names == {"sources": "units.sources.demo_lowres.adapter", "transfer": "units.demo_lowres.adapter",
                     JOINT_MODEL_TAG: "units.multitask.demo_lowres.adapter"}
    assert units.registry_name(cfg.experiment_name(), JOINT_MODEL_TAG, "a+b", "hyperformer") == "units.multitask.a-b.hyperformer"
    assert units.logged_model_name("sources", "demo_lowres", "adapter", 42) == "sources-demo_lowres-adapter-seed42"
    assert units.logged_model_name("transfer", "demo_lowres", "scalearn", 1) == "demo_lowres-scalearn-seed1"
    assert units.Unit("transfer", "rte", "scalearn", "k", seed=1).label == "rte/scalearn seed 1 (transfer)"


def test_a_unit_reference_naming_several_units_lists_them_and_how_to_pick_one(cfg):
    """TARGET/METHOD of the latest run, where the task is a source and a target (both seed 42) and where
    a method has one fit per seed: the error names every candidate's stage, seed, run and registered
    version. A unit the run reused under both stages is one unit, not a choice."""
    from peft_core.errors import ConfigError
    from tasks.fitted_units import resolve_unit
    from tasks.tracking import UnitRun, end_run, record_reuse, start_pipeline_run

    tracking = tracking_for(cfg)
    client = tracking.client()
    parent = start_pipeline_run(tracking, cfg.model_dump(mode="json"), "pipeline one")
    runs = {}
    for stage, method, seed in (("sources", "adapter", 42), ("transfer", "adapter", 42), ("transfer", "scalearn", 1),
                                ("transfer", "scalearn", 2), ("sources", "average", 42)):
        with UnitRun(tracking, parent, units.unit_label(stage, "demo_lowres", method, seed), stage=stage,
                     task="demo_lowres", method=method, unit_key=f"{stage}-{method}-{seed}") as run:
            run.log_params({"seed": seed})
        name = units.registry_name(cfg.experiment_name(), stage, "demo_lowres", method)
        client.create_registered_model(name) if not client.search_registered_models(f"name = '{name}'") else None
        client.create_model_version(name, f"file:///nowhere/{run.run_id}", run_id=run.run_id)
        runs[(stage, method, seed)] = run.run_id
    reused = client.get_run(runs[("sources", "average", 42)])  # the same unit again, under the transfer stage
    record_reuse(tracking, parent, reused, "reuse", stage="transfer", task="demo_lowres", method="average",
                 unit_key="sources-average-42")
    end_run(tracking, parent)
    cache = cfg.home_dir() / "model-cache"

    with pytest.raises(ConfigError) as raised:
        resolve_unit(tracking, "demo_lowres/adapter", cache)
    message = str(raised.value)
    assert message.startswith(f"demo_lowres/adapter names 2 units of the latest pipeline run ({parent}): ")
    assert (f"the sources stage's demo_lowres/adapter, seed 42: run {runs[('sources', 'adapter', 42)]}, "
            "models:/units.sources.demo_lowres.adapter/1") in message
    assert (f"the transfer stage's demo_lowres/adapter, seed 42: run {runs[('transfer', 'adapter', 42)]}, "
            "models:/units.demo_lowres.adapter/1") in message
    assert message.endswith("pick one by its run id, models:/NAME/VERSION or NAME@ALIAS")

    with pytest.raises(ConfigError) as raised:
        resolve_unit(tracking, "demo_lowres/scalearn", cache)
    assert "seed 1: run" in str(raised.value) and "models:/units.demo_lowres.scalearn/2" in str(raised.value)

    with pytest.raises(ConfigError, match="kept no fitted model"):  # one unit: resolved, though it has no files
        resolve_unit(tracking, "demo_lowres/average", cache)


def test_the_experiment_opens_as_machine_learning_in_mlflow(cfg):
    """MLflow 3 lands on the GenAI overview for an experiment without a kind; ours say they are ML runs,
    made here or found without the tag (an older store)."""
    from tasks.tracking import EXPERIMENT_KIND_TAG

    tracking = tracking_for(cfg)
    client = tracking.client()
    assert client.get_experiment(tracking.experiment_id()).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    older = client.create_experiment("older")
    Tracking(tracking.uri, "older", tracking.artifact_root).experiment_id()
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
