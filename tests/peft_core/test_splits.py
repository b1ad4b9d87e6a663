from collections import Counter

import pytest

from peft_core.data import Example, apply_split, load_task_data, sample_k_shot
from peft_core.errors import ConfigError, DataError
from peft_core.task_specs import get_task

RTE = get_task("rte")


def examples(n, positive_share=0.3, tag="t"):
    """n classification examples; the first `positive_share` of them have label 1."""
    return [Example((f"{tag}{i}", "h"), int(i < positive_share * n)) for i in range(n)]


def texts(split):
    return {ex.texts for ex in split}


def test_scalearn_holds_out_a_stratified_tenth_of_train_and_tests_on_dev():
    raw = {"train": examples(1000), "test": examples(50, tag="d")}
    splits = apply_split(RTE, raw)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (900, 100, 50)
    assert Counter(ex.label for ex in splits.validation) == {0: 70, 1: 30}
    assert not texts(splits.train) & texts(splits.validation)
    assert texts(splits.train) | texts(splits.validation) == texts(raw["train"])
    assert splits.test == raw["test"]


def test_held_out_size_rounds_up_like_sklearn():
    splits = apply_split(RTE, {"train": examples(25), "test": examples(5)})
    assert (len(splits.train), len(splits.validation)) == (22, 3)


def test_split_is_deterministic_by_seed_and_keeps_file_order():
    raw = {"train": examples(200), "test": examples(20)}
    first, again, other = apply_split(RTE, raw), apply_split(RTE, raw), apply_split(RTE, raw, seed=7)
    assert first.digest() == again.digest()
    assert first.validation != other.validation
    order = {ex.texts: i for i, ex in enumerate(raw["train"])}
    assert [order[ex.texts] for ex in first.train] == sorted(order[ex.texts] for ex in first.train)


def test_single_file_set_gets_a_seeded_test_split_then_a_validation_split():
    raw = {"all": [Example(("p", f"{i}"), i % 3) for i in range(300)]}
    splits = apply_split(get_task("mnli"), raw)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (243, 27, 30)
    assert Counter(ex.label for ex in splits.test) == {0: 10, 1: 10, 2: 10}
    assert texts(splits.train) | texts(splits.validation) | texts(splits.test) == texts(raw["all"])
    assert not texts(splits.test) & (texts(splits.train) | texts(splits.validation))
    assert apply_split(get_task("mnli"), raw).test == splits.test
    assert apply_split(get_task("mnli"), raw, seed=7).test != splits.test


def test_a_k_shot_sample_draws_k_balanced_examples_per_seed_and_keeps_test_whole():
    base = apply_split(RTE, {"train": examples(200), "test": examples(40, tag="d")})
    sample = sample_k_shot(RTE, base, 11, seed=1)
    assert len(sample.train) == 11 and len(sample.validation) == 11 and sample.test == base.test
    assert sorted(Counter(ex.label for ex in sample.train).values()) == [5, 6]
    assert not texts(sample.train) & texts(sample.validation)
    assert texts(sample.train) <= texts(base.train) | texts(base.validation)
    assert sample_k_shot(RTE, base, 11, seed=1) == sample
    assert texts(sample_k_shot(RTE, base, 11, seed=2).train) != texts(sample.train)
    per_label = sample_k_shot(RTE, base, 4, seed=1, per_label=True, validation_k=6)
    assert Counter(ex.label for ex in per_label.train) == {0: 4, 1: 4} and len(per_label.validation) == 6


def test_a_k_shot_sample_asking_more_than_a_label_has_names_the_label():
    base = apply_split(RTE, {"train": examples(20), "test": examples(4, tag="d")})
    with pytest.raises(DataError, match="label 'entailment'|label 'not_entailment'"):
        sample_k_shot(RTE, base, 8, seed=1, per_label=True)
    with pytest.raises(DataError, match="11 validation examples but only 9 are left"):
        sample_k_shot(RTE, base, 11, seed=1)


def test_hyperformer_halves_a_small_dev_set_and_keeps_train_whole():
    raw = {"train": examples(500), "test": examples(101, tag="d")}
    splits = apply_split(RTE, raw, convention="hyperformer")
    assert splits.train == raw["train"]
    assert (len(splits.validation), len(splits.test)) == (50, 51)
    assert texts(splits.validation) | texts(splits.test) == texts(raw["test"])
    assert not texts(splits.validation) & texts(splits.test)


def test_hyperformer_takes_1000_train_examples_as_validation_for_a_large_dev_set():
    raw = {"train": examples(20_000), "test": examples(10_000, tag="d")}
    splits = apply_split(RTE, raw, convention="hyperformer")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (19_000, 1_000, 10_000)
    assert not texts(splits.train) & texts(splits.validation)  # no leak back into train


def test_caps_are_drawn_after_the_validation_split_and_stratified():
    raw = {"train": examples(2000), "test": examples(400, tag="d")}
    full = apply_split(RTE, raw)
    capped = apply_split(RTE, raw, max_train=500, max_eval=100)
    assert capped.validation != full.validation[:100] and len(capped.validation) == 100
    assert texts(capped.validation) <= texts(full.validation)
    assert texts(capped.train) <= texts(full.train) and len(capped.train) == 500
    assert Counter(ex.label for ex in capped.train) == {0: 350, 1: 150}
    assert len(capped.test) == 100


def test_regression_is_split_without_stratification():
    stsb = get_task("stsb")
    raw = {"train": [Example(("a", f"{i}"), i / 20) for i in range(100)], "test": [Example(("a", "b"), 1.0)]}
    splits = apply_split(stsb, raw, max_train=30)
    assert (len(splits.train), len(splits.validation)) == (30, 10)


def test_empty_validation_is_an_error_naming_the_task():
    with pytest.raises(DataError, match="task rte: the validation split is empty"):
        apply_split(RTE, {"train": examples(10), "test": examples(1)}, convention="hyperformer")


def test_no_data_and_bad_arguments():
    with pytest.raises(DataError, match="no labelled examples"):
        apply_split(RTE, {})
    with pytest.raises(ConfigError, match="unknown split convention"):
        apply_split(RTE, {"train": examples(10)}, convention="random")
    with pytest.raises(ConfigError, match="max_train is 0"):
        apply_split(RTE, {"train": examples(10)}, max_train=0)


def test_load_task_data_on_the_demo_suite():
    splits = load_task_data(get_task("demo_lowres"), "demo")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (64, 8, 400)
