"""The evaluation unit (tasks/adapter_units.py evaluate_saved_adapter) runs on the unit skeleton:
a finished evaluation is reused by key, --force-stage evaluate reruns it, a failing one is marked
FAILED and run again next time; every run names the adapter run it evaluated."""

from __future__ import annotations

import pytest

import tasks.adapter_units as adapter_units
from peft_core.task_specs import get_task
from tasks.config import PipelineConfig
from tasks.tracking import UNIT_KEY_TAG, Tracking

ADAPTER = {"stage": "sources", "task": "demo_sentiment", "method": "adapter", "unit_key": "adapter-0123",
           "run_id": "f" * 32, "artifact_dir": "/nowhere/adapter", "metrics": {}, "reused": False, "seed": 1}
PREPARED = {"task": "demo_sentiment", "digest": "d1", "folder": "/nowhere/data", "spec": get_task("demo_sentiment").to_json()}


class Evaluator:
    """Stands in for `evaluate_adapter`: records its calls, returns fixed metrics or raises."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = 0, fail

    def __call__(self, artifact_dir, backbone, spec, splits) -> dict[str, float]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("artifact unreadable")
        assert str(artifact_dir) == ADAPTER["artifact_dir"] and spec.name == ADAPTER["task"]
        return {"validation_accuracy": 0.75, "test_accuracy": 0.5}


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ADAPTERFLOW_HOME", raising=False)
    monkeypatch.setattr(adapter_units, "load_backbone", lambda name: None)
    monkeypatch.setattr(adapter_units, "load_splits", lambda folder: None)
    return PipelineConfig(name="evaluation", home=str(tmp_path / "home"))


def _evaluate(cfg, monkeypatch, evaluator):
    monkeypatch.setattr(adapter_units, "evaluate_adapter", evaluator)
    return adapter_units.evaluate_saved_adapter.fn(cfg, ADAPTER, PREPARED, None)


def _runs(cfg):
    tracking = Tracking.from_config(cfg)
    key = adapter_units.evaluate_unit_key(ADAPTER["unit_key"], PREPARED)
    return tracking.client().search_runs([tracking.experiment_id()], f"tags.`{UNIT_KEY_TAG}` = '{key}'",
                                         order_by=["attributes.start_time ASC"])


def test_a_finished_evaluation_is_reused_with_its_metrics(cfg, monkeypatch):
    evaluator = Evaluator()
    first = _evaluate(cfg, monkeypatch, evaluator)
    again = _evaluate(cfg, monkeypatch, evaluator)
    assert evaluator.calls == 1
    assert first == again == {**ADAPTER, "evaluation": {"validation_accuracy": 0.75, "test_accuracy": 0.5}}
    runs = _runs(cfg)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert all(r.data.tags["evaluated_run_id"] == ADAPTER["run_id"] and r.data.tags["stage"] == "evaluate" for r in runs)
    assert runs[1].data.tags["reused"] == "true" and runs[1].data.tags["artifact_run_id"] == runs[0].info.run_id


def test_force_stage_evaluate_reruns_it_and_forcing_another_stage_does_not(cfg, monkeypatch):
    evaluator = Evaluator()
    _evaluate(cfg, monkeypatch, evaluator)
    _evaluate(cfg.model_copy(update={"force_stages": ["sources", "transfer"]}), monkeypatch, evaluator)
    assert evaluator.calls == 1
    _evaluate(cfg.model_copy(update={"force_stages": ["evaluate"]}), monkeypatch, evaluator)
    assert evaluator.calls == 2


def test_a_failing_evaluation_is_marked_failed_and_run_again_next_time(cfg, monkeypatch):
    with pytest.raises(RuntimeError, match="artifact unreadable"):
        _evaluate(cfg, monkeypatch, Evaluator(fail=True))
    assert [r.info.status for r in _runs(cfg)] == ["FAILED"]
    evaluator = Evaluator()
    assert _evaluate(cfg, monkeypatch, evaluator)["evaluation"]["test_accuracy"] == 0.5
    assert evaluator.calls == 1 and [r.info.status for r in _runs(cfg)] == ["FAILED", "FINISHED"]
