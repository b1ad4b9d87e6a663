"""The transfer unit's settings (tasks/transfer_units.py): what goes into its key, what the config
refuses. That the unit logs the weights heatmap and report is checked on a real pipeline run in
tests/flows/test_pipeline.py."""

from __future__ import annotations

import pytest

import tasks.transfer_units as transfer_units
from peft_core.errors import ConfigError
from tasks.config import PipelineConfig, load_config

def test_a_head_from_the_own_adapter_is_its_own_unit_and_the_default_keeps_the_keys():
    prepared = {"task": "demo_lowres", "digest": "d1", "sizes": {"train": 32}}
    sources = [{"task": "demo_sentiment", "unit_key": "adapter-1"}, {"task": "demo_lowres", "unit_key": "adapter-2"}]

    def key(**transfer):
        cfg = PipelineConfig(name="keys", transfer=transfer)
        return transfer_units.transfer_unit_key(cfg, prepared, "scalearn", sources, 1)

    assert key() == key(head_init={"default": "new"}) == key(head_init={"average": "own"})
    assert key(head_init={"scalearn": "own"}) != key()


def test_an_own_head_without_an_own_source_is_a_config_error():
    with pytest.raises(ConfigError, match="transfer.head_init': pemt starts its head from the target's own adapter"):
        load_config(None, **{"methods": ["adapter", "pemt"], "transfer.head_init": {"default": "own"}})


def test_a_step_budget_by_passes_grows_with_the_sample_and_is_in_every_target_key():
    """target_steps: 30 passes with a floor of 60 steps gives 60 steps at k = 32 and 480 at k = 256
    (batch 16), and the resolved budget reaches the keys of every kind of target fit."""
    from tasks.adapter_units import adapter_unit_key
    from tasks.hyperformer_transfer_units import hyperformer_transfer_unit_key

    cfg = load_config(None, **{"training.targets.batch_size": 16, "training.target_steps": {"passes": 30, "min_steps": 60}})
    small, large = ({"task": "demo_lowres", "digest": "d1", "sizes": {"train": n}} for n in (32, 256))
    assert [transfer_units.transfer_train_config(cfg, p, "scalearn", 1).max_steps for p in (small, large)] == [60, 480]
    assert transfer_units.full_finetune_train_config(cfg, large, 1).max_steps == 480
    sources = [{"task": "demo_sentiment", "unit_key": "adapter-1"}]
    keys = [(adapter_unit_key(cfg, p, 1, False, "target"), transfer_units.transfer_unit_key(cfg, p, "scalearn", sources, 1),
             transfer_units.full_finetune_unit_key(cfg, p, 1),
             hyperformer_transfer_unit_key(cfg, p, "hyperformer_plus_plus_few_shot", "joint-1", 1)) for p in (small, large)]
    assert all(a != b for a, b in zip(*keys))
    # sources keep their own settings whatever the targets' budget
    assert adapter_unit_key(cfg, small, 1, False, "source") == adapter_unit_key(cfg, large | {"sizes": {"train": 32}}, 1,
                                                                                 False, "source")
    capped = load_config(None, **{"training.targets.batch_size": 16,
                                  "training.target_steps": {"passes": 30, "min_steps": 60, "max_steps": 200}})
    assert transfer_units.transfer_train_config(capped, large, "scalearn", 1).max_steps == 200


def test_one_step_budget_for_the_targets():
    with pytest.raises(ConfigError, match="training.targets.max_steps and training.target_steps both set"):
        load_config(None, **{"training.targets.max_steps": 60, "training.target_steps": {"passes": 30}})
