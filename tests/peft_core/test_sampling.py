"""Temperature task sampling: p_t ∝ (N_t/ΣN)^{1/T}, seeded, one task per batch."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy.stats import chi2

from peft_core.data.encoding import EncodedSplit
from peft_core.errors import ConfigError
from peft_core.sampling import TemperatureSampler, task_probabilities

SIZES = {"big": 1000, "mid": 100, "small": 10}


def test_probabilities_follow_the_formula():
    p = task_probabilities(SIZES, temperature=10.0)
    raw = {t: (n / 1110) ** 0.1 for t, n in SIZES.items()}
    assert p == pytest.approx({t: w / sum(raw.values()) for t, w in raw.items()})
    assert p["big"] > p["mid"] > p["small"] > 10 / 1110  # flattened towards uniform, order kept


def test_temperature_one_is_proportional_and_infinity_uniform():
    assert task_probabilities(SIZES, 1.0) == pytest.approx({"big": 1000 / 1110, "mid": 100 / 1110, "small": 10 / 1110})
    assert task_probabilities(SIZES, math.inf) == pytest.approx({t: 1 / 3 for t in SIZES})


@pytest.mark.parametrize("temperature", [1.0, 10.0, math.inf])
def test_empirical_frequencies_match_the_probabilities(temperature):
    sampler = TemperatureSampler(SIZES, temperature, seed=3)
    draws = 20_000
    counts = Counter(task for epoch in range(4) for task in sampler.epoch_tasks(epoch, draws // 4))
    expected = {t: p * draws for t, p in sampler.probabilities.items()}
    statistic = sum((counts[t] - e) ** 2 / e for t, e in expected.items())
    assert statistic < chi2.ppf(0.999, df=len(SIZES) - 1)


def test_an_epochs_draws_depend_only_on_seed_and_epoch():
    first, again = TemperatureSampler(SIZES, seed=7), TemperatureSampler(SIZES, seed=7)
    assert again.epoch_tasks(3, 50) == first.epoch_tasks(3, 50)  # as after a resume, no epochs 0-2 drawn
    assert first.epoch_tasks(3, 50) != first.epoch_tasks(4, 50)
    assert TemperatureSampler(SIZES, seed=8).epoch_tasks(3, 50) != first.epoch_tasks(3, 50)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan])
def test_non_positive_temperature_is_a_config_error(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        task_probabilities(SIZES, temperature)


def test_a_task_without_training_data_is_named():
    with pytest.raises(ConfigError, match="'?empty'?.*no training data"):
        TemperatureSampler({"big": 10, "empty": 0})


def _split(num_rows: int, first_id: int) -> EncodedSplit:
    rows = [{"input_ids": [first_id + i, 1], "attention_mask": [1, 1], "labels": 0} for i in range(num_rows)]
    return EncodedSplit(rows, digest="test", pad_id=0)


def test_batches_hold_one_task_each_and_cycle_through_small_tasks():
    splits = {"big": _split(40, 1000), "small": _split(4, 0)}  # 10 batches and 1 batch of 4
    sampler = TemperatureSampler({"big": 40, "small": 4}, temperature=math.inf, seed=1)
    batches = list(sampler.batches(splits, 4, epoch=0, num_batches=11))
    assert [task for task, _ in batches] == sampler.epoch_tasks(0, 11)
    for task, batch in batches:
        ids = batch["input_ids"][:, 0]
        assert bool(((ids >= 1000) if task == "big" else (ids < 1000)).all())
    small = [batch for task, batch in batches if task == "small"]
    assert len(small) > 1  # drawn more often than it has batches: it goes round again
    again = list(sampler.batches(splits, 4, epoch=0, num_batches=11))
    assert all(torch.equal(a[1]["input_ids"], b[1]["input_ids"]) for a, b in zip(batches, again))
