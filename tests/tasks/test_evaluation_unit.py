"""The evaluation unit (tasks/adapter_units.py evaluate_saved_adapter) runs on the unit skeleton:
a finished evaluation is reused by key, --force-stage evaluate reruns it, a failing one is marked
FAILED and run again next time; every run names the adapter run it evaluated. A real adapter of a
tiny backbone, trained once for the module, is evaluated for real."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from flows.config import load_config
from flows.data_plans import data_recipe
from flows.unit_plans import adapter_unit, unit_context
from tasks.adapter_units import evaluate_saved_adapter, train_adapter_unit
from tasks.data_units import prepare_task_data
from tasks.tracking import UNIT_KEY_TAG
from tasks.unit_specs import Evaluation


@pytest.fixture(scope="module")
def trained(prefect_api, tmp_path_factory, tiny_backbone_dir):
    """(config, the adapter's result, its prepared data): one demo_sentiment adapter, one short epoch."""
    from tests.helpers.configs import write_tiny_config

    path, _ = write_tiny_config(tmp_path_factory.mktemp("evaluation"), tiny_backbone_dir)
    cfg = load_config(path)
    data = prepare_task_data.fn(data_recipe(cfg, "demo_sentiment", "source"), cfg.home_dir() / "data")
    adapter = train_adapter_unit.fn(adapter_unit(cfg, data, 1), unit_context(cfg, None))
    return cfg, adapter, data


def _evaluate(cfg, adapter, data, force_stages=()):
    context = unit_context(cfg.model_copy(update={"force_stages": list(force_stages)}), None)
    return evaluate_saved_adapter.fn(Evaluation(cfg.backbone, adapter, data), context)


def _runs(cfg, adapter, data):
    context = unit_context(cfg, None)
    key = Evaluation(cfg.backbone, adapter, data).key
    return context.tracking.client().search_runs([context.tracking.experiment_id()], f"tags.`{UNIT_KEY_TAG}` = '{key}'",
                                                 order_by=["attributes.start_time ASC"])


def test_a_finished_evaluation_is_reused_with_its_metrics_and_forced_only_by_its_stage(trained):
    cfg, adapter, data = trained
    first = _evaluate(cfg, adapter, data)
    assert first.evaluation["test_accuracy"] == pytest.approx(adapter.metrics["test_accuracy"], abs=1e-9)
    assert dataclasses.replace(first, evaluation=None) == adapter
    assert _evaluate(cfg, adapter, data) == first
    _evaluate(cfg, adapter, data, force_stages=["sources", "transfer"])
    runs = _runs(cfg, adapter, data)
    assert [r.data.tags.get("reused") for r in runs] == [None, "true", "true"]
    assert all(r.data.tags["evaluated_run_id"] == adapter.run_id and r.data.tags["stage"] == "evaluate" for r in runs)
    assert runs[1].data.tags["artifact_run_id"] == runs[0].info.run_id
    assert runs[0].data.params["evaluated_unit_key"] == adapter.unit_key
    _evaluate(cfg, adapter, data, force_stages=["evaluate"])
    assert _runs(cfg, adapter, data)[-1].data.tags.get("reused") is None


def test_a_failing_evaluation_is_marked_failed_and_run_again_next_time(trained, tmp_path):
    cfg, adapter, data = trained
    broken = tmp_path / "adapter"
    shutil.copytree(adapter.artifact_dir, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    other = dataclasses.replace(adapter, unit_key="adapter-broken", artifact_dir=str(broken))
    with pytest.raises(Exception, match="deserializing header"):  # safetensors' own error
        _evaluate(cfg, other, data)
    assert [r.info.status for r in _runs(cfg, other, data)] == ["FAILED"]
    shutil.rmtree(broken)
    shutil.copytree(adapter.artifact_dir, broken)
    assert _evaluate(cfg, other, data).evaluation["test_accuracy"] == pytest.approx(adapter.metrics["test_accuracy"], abs=1e-9)
    assert [r.info.status for r in _runs(cfg, other, data)] == ["FAILED", "FINISHED"]
