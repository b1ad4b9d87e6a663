"""The transfer unit's settings (tasks/transfer_units.py): what goes into its key, what the config
refuses. That the unit logs the weights heatmap and report is checked on a real pipeline run in
tests/flows/test_pipeline.py."""

from __future__ import annotations

import pytest

import tasks.transfer_units as transfer_units
from peft_core.errors import ConfigError
from tasks.config import PipelineConfig, load_config

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
