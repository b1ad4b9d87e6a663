"""The transfer unit (tasks/transfer_units.py fit_transfer_unit) draws the fit's weights heatmap
(`weights.png`) into the artifact folder it logs, and logs the weights report as `weights.json`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import tasks.transfer_units as transfer_units
from peft_core.jobs import TrainingResult
from peft_core.weights_plot import WEIGHTS_PLOT
from peft_core.errors import ConfigError
from tasks.config import PipelineConfig, load_config

REPORT = {"sources": ["sst2", "imdb"], "sites": ["0.ffn", "1.ffn"], "weights": [[0.25, 0.75], [0.5, 0.5]], "details": {}}


def test_the_transfer_unit_writes_the_weights_heatmap_beside_the_artifact(tmp_path, monkeypatch):
    def fake_fit_transfer(backbone, spec, splits, method, source_dirs, train, output_dir, **options):
        output_dir.mkdir(parents=True)
        return TrainingResult({"test_accuracy": 0.5}, [], 1, 0.1, 1.0, 10, 2, artifact_dir=output_dir,
                              extra={"weights": REPORT})

    def fake_run_training_unit(cfg, parent_run_id, *, train, **unit):
        progress = SimpleNamespace(on_epoch=None, on_step=None)
        result = train(tmp_path / "adapter", tmp_path / "checkpoint", progress)
        return SimpleNamespace(to_dict=lambda: {"result": result})

    monkeypatch.setattr(transfer_units, "fit_transfer", fake_fit_transfer)
    monkeypatch.setattr(transfer_units, "run_training_unit", fake_run_training_unit)
    monkeypatch.setattr(transfer_units, "load_backbone", lambda name: None)
    monkeypatch.setattr(transfer_units, "load_splits", lambda folder: None)
    cfg = PipelineConfig(name="transfer", home=str(tmp_path / "home"))
    prepared = {"task": "demo_sentiment", "digest": "d1", "folder": "/nowhere", "sizes": {}}
    sources = [{"task": "sst2", "unit_key": "adapter-1", "artifact_dir": "/a"},
               {"task": "imdb", "unit_key": "adapter-2", "artifact_dir": "/b"}]
    result = transfer_units.fit_transfer_unit.fn(cfg, prepared, "scalearn", sources, 1, None)["result"]
    assert (tmp_path / "adapter" / WEIGHTS_PLOT).stat().st_size > 0
    assert result.extra["json_artifacts"] == {"weights.json": REPORT}


def test_a_head_from_the_own_adapter_is_its_own_unit_and_the_default_keeps_the_keys():
    prepared = {"task": "demo_lowres", "digest": "d1"}
    sources = [{"task": "demo_sentiment", "unit_key": "adapter-1"}, {"task": "demo_lowres", "unit_key": "adapter-2"}]

    def key(**transfer):
        cfg = PipelineConfig(name="keys", transfer=transfer)
        return transfer_units.transfer_unit_key(cfg, prepared, "scalearn", sources, 1)

    assert key() == key(head_init={"default": "new"}) == key(head_init={"average": "own"})
    assert key(head_init={"scalearn": "own"}) != key()


def test_an_own_head_without_an_own_source_is_a_config_error():
    with pytest.raises(ConfigError, match="transfer.head_init': pemt starts its head from the target's own adapter"):
        load_config(None, **{"methods": ["adapter", "pemt"], "transfer.head_init": {"default": "own"}})
