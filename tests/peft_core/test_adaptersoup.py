"""AdapterSoup: the sources' parameters averaged into one frozen adapter per site; only the head trains.
By default the sources are chosen by the similarity of their training text to the target's (top 5,
weighted by similarity, the target's own adapter left out); `select: all` is the uniform soup."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE
from peft_core.compositions import AdapterSoup, SingleAdapter, SourceTexts, get_method
from peft_core.compositions import soup as soup_module
from peft_core.compositions.soup import choose_soup_sources, similarity_choice
from peft_core.compositions.text_similarity import text_similarities
from peft_core.configs import AdapterConfig, EvalSettings
from peft_core.errors import ConfigError
from peft_core.model import AdapterModel
from peft_core.parameter_counts import transfer_parameter_count
from peft_core.adapter_jobs import encode_splits
from peft_core.sites import AdapterSite
from peft_core.training import predict
from peft_core.transfer import build_transfer_model, fit_transfer, load_sources, load_transfer_model, transfer_parameters
from flows.config import load_config

from tests.helpers.core import HIDDEN as D
from tests.helpers.core import sentiment_splits
from tests.helpers.transfer import (ADAPTER, FAST, SOURCE_TASKS, SPEC, model_logits, random_bank, rewritten_source,
                                    single_adapter_from, unlabelled_batch)

pytestmark = pytest.mark.usefixtures("one_thread")

SOUP = get_method("adaptersoup")
TENSORS = ("down_weight", "down_bias", "up_weight", "up_bias")


def weighted_mean(bank, weights):
    """Reference: Σ_j w_j θ_j / Σ_j w_j of every tensor, from the bank's stacked per-adapter states."""
    w = torch.tensor(weights, dtype=torch.float32)
    states = [bank.adapter_state(j) for j in range(bank.num_adapters)]
    return {name: torch.einsum("k,k...->...", w / w.sum(), torch.stack([s[name] for s in states])) for name in TENSORS}


def single_adapter_with(state):
    single = SingleAdapter(D, ADAPTER)
    single.load_adapter_state(state)
    return single


# -- the averaged parameters -------------------------------------------------------------------
@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 1.0], [0.0, 0.0, 5.0]])
def test_each_site_holds_the_weighted_mean_of_the_sources_parameters(weights):
    banks = [random_bank(3, seed=s) for s in range(4)]
    options = {} if weights is None else {"weights": weights}
    soups = SOUP.compositions(banks, ADAPTER, options)
    assert len(soups) == len(banks) and all(isinstance(s, AdapterSoup) for s in soups)
    for soup, bank in zip(soups, banks):
        expected = weighted_mean(bank, weights or [1.0, 1.0, 1.0])
        state = soup.adapter_state()
        assert set(state) == set(TENSORS)
        for name in TENSORS:
            torch.testing.assert_close(state[name], expected[name])
    scaled = [w / sum(weights) for w in weights] if weights else [1 / 3] * 3
    assert soups[0].report()["weights"] == pytest.approx(scaled)


def test_weighted_and_uniform_soups_differ_and_only_the_ratio_of_weights_matters():
    bank = random_bank(2)
    uniform = SOUP.compositions([bank], ADAPTER)[0].adapter_state()
    weighted = SOUP.compositions([bank], ADAPTER, {"weights": [0.7, 0.3]})[0].adapter_state()
    scaled = SOUP.compositions([bank], ADAPTER, {"weights": [7, 3]})[0].adapter_state()
    assert not torch.allclose(uniform["up_weight"], weighted["up_weight"])
    for name in TENSORS:
        torch.testing.assert_close(weighted[name], scaled[name])


def test_a_soup_computes_what_a_single_adapter_with_the_averaged_parameters_computes(tiny_backbone):
    backbone = tiny_backbone()
    banks = {layer: random_bank(3, seed=20 + layer) for layer in range(2)}
    soups = dict(zip(banks, SOUP.compositions(list(banks.values()), ADAPTER, {"weights": [0.5, 0.3, 0.2]})))
    souped, head = model_logits(backbone, lambda site: soups[site.layer])
    alone, _ = model_logits(backbone, lambda site: single_adapter_with(weighted_mean(banks[site.layer], [0.5, 0.3, 0.2])),
                            head)
    torch.testing.assert_close(souped, alone)
    # weight-space averaging is not output averaging: the adapter is non-linear in its parameters
    averaged, _ = model_logits(backbone, lambda site: get_method("average").compositions([banks[site.layer]], ADAPTER)[0],
                               head)
    assert not torch.allclose(souped, averaged)


def test_a_soup_of_one_source_is_that_source_exactly(tiny_backbone):
    backbone = tiny_backbone()
    banks = {layer: random_bank(1, seed=30 + layer) for layer in range(2)}
    soups = dict(zip(banks, SOUP.compositions(list(banks.values()), ADAPTER)))
    for layer, soup in soups.items():
        source = banks[layer].adapter_state(0)
        assert all(torch.equal(soup.adapter_state()[name], source[name]) for name in TENSORS)
    souped, head = model_logits(backbone, lambda site: soups[site.layer])
    alone, _ = model_logits(backbone, lambda site: single_adapter_from(banks[site.layer], 0), head)
    assert torch.equal(souped, alone)


def test_nothing_in_a_soup_trains():
    soup = SOUP.compositions([random_bank(2)], ADAPTER)[0]
    assert not any(p.requires_grad for p in soup.parameters())
    assert not any(p.requires_grad for p in SOUP.compositions([random_bank(2)], ADAPTER, {"weights": [1, 0]})[0].parameters())


def test_a_soup_trains_no_transfer_parameters_at_roberta_base_size():
    assert transfer_parameter_count("adaptersoup", 768, 12, 8, AdapterConfig()) == 0  # built on the meta device


# -- options -----------------------------------------------------------------------------------
def test_the_options_and_a_misspelt_one_is_named():
    assert SOUP.options == ("weights", "select", "top_k", "sample_size", "include_target")
    with pytest.raises(ConfigError, match=r"adaptersoup has no option\(s\) \['weight'\]; its options: weights, "
                                          "select, top_k, sample_size, include_target"):
        SOUP.compositions([random_bank(2)], ADAPTER, {"weight": [1, 1]})
    # the choice's options are read by the choice, not the builder: given weights are what it averages with
    built = SOUP.compositions([random_bank(2)], ADAPTER, {"select": "similarity", "top_k": 1, "weights": [1, 3]})
    assert built[0].report()["weights"] == [0.25, 0.75]


@pytest.mark.parametrize("weights, problem", [
    ([1.0], "has 1 value\\(s\\) but the fit combines 2 source adapters"),
    ([1.0, 1.0, 1.0], "has 3 value\\(s\\) but the fit combines 2 source adapters"),
    ([-1.0, 2.0], "is \\[-1.0, 2.0\\]; give one weight"),
    ([0, 0], "must be finite and non-negative with a positive sum"),
    ([float("nan"), 1.0], "is \\[nan, 1.0\\]; give one weight"),
    ("0.5, 0.5", "is '0.5, 0.5'; give one weight"),
    ({"mnli": 0.7, "qnli": 0.3}, "is {'mnli': 0.7, 'qnli': 0.3}; give one weight"),
    ([True, 1], "is \\[True, 1\\]; give one weight"),
    (0.5, "is 0.5; give one weight"),
])
def test_bad_weights_are_a_config_error_naming_the_option_and_the_fix(weights, problem):
    with pytest.raises(ConfigError, match=f"adaptersoup option 'weights'.*{problem}") as caught:
        SOUP.compositions([random_bank(2), random_bank(2, seed=1)], ADAPTER, {"weights": weights})
    message = str(caught.value)
    assert "give one weight per source, in the order of the fit's sources" in message and "\n" not in message


def write_config(tmp_path, options: dict):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"methods": ["adapter", "adaptersoup"], "transfer": {"options": {"adaptersoup": options}}}))
    return path


def test_yaml_options_of_adaptersoup_reach_the_fit_as_written(tmp_path):
    config = load_config(write_config(tmp_path, {"weights": [0.7, 0.3, 0.0, 1.0]}))
    assert config.methods == ["adapter", "adaptersoup"]
    assert config.transfer.options_for("adaptersoup") == {"weights": [0.7, 0.3, 0.0, 1.0]}
    chosen = load_config(write_config(tmp_path, {"select": "similarity", "top_k": 3, "sample_size": 200}))
    assert chosen.transfer.options_for("adaptersoup") == {"select": "similarity", "top_k": 3, "sample_size": 200}


def test_a_misspelt_yaml_option_of_adaptersoup_is_a_one_line_config_error(tmp_path):
    path = write_config(tmp_path, {"weigths": [0.7, 0.3]})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "transfer.options" in message
    assert ("transfer.options.adaptersoup: adaptersoup has no option(s) ['weigths']; its options: weights, select, "
            "top_k, sample_size, include_target") in message


@pytest.mark.parametrize("method, options, problem", [
    ("adaptersoup", {"top_k": 0}, "adaptersoup option 'top_k' is 0; use a whole number of at least 1"),
    ("adaptersoup", {"weights": "0.7, 0.3"}, "adaptersoup option 'weights' is '0.7, 0.3'; give one weight per source"),
    ("pemt", {"target_adapter": "after"}, "pemt option 'target_adapter' is 'after'; use one of sequential, parallel"),
    ("scalearn", {"omega_dropout": 1.5}, "scalearn option 'omega_dropout' is 1.5; use a number from 0 up to"),
    ("adapterfusion", {"regularization": -1}, "adapterfusion option 'regularization' is -1; use a number of at least 0"),
])
def test_a_bad_option_value_fails_when_the_config_loads(method, options, problem):
    """Not after the sources trained: the config checks values by the rules the methods check them with."""
    with pytest.raises(ConfigError, match=f"transfer.options.{method}: {re.escape(problem)}"):
        load_config(None, **{"methods": ["adapter", method], "transfer.options": {method: options}})


# -- in a model: only the head trains, and a fit saves and reloads -----------------------------
def test_in_a_transfer_model_only_the_head_trains(backbone, source_dirs):
    model = build_transfer_model(backbone, SPEC, load_sources(source_dirs, backbone, SPEC.name), SOUP,
                                 {"weights": [0.6, 0.4]})
    try:
        trainable = transfer_parameters(model, SPEC.name)
        assert trainable and all(name.startswith("head.") for name in trainable)
        model.train()
        batch = unlabelled_batch() | {"labels": torch.tensor([0, 1, 0])}
        model(batch, SPEC.name).loss.backward()
        with_grad = {id(p) for p in model.parameters() if p.grad is not None}
        assert with_grad == {id(p) for p in trainable.values()}
    finally:
        model.detach()


def test_a_fit_saves_the_head_only_and_reloads_with_the_same_predictions(backbone, source_dirs, tmp_path):
    splits = sentiment_splits()
    out = tmp_path / "fit"
    result = fit_transfer(backbone, SPEC, splits, "adaptersoup", source_dirs, FAST, out,
                          method_options={"weights": [3, 1]})
    assert json.loads((out / CONFIG_FILE).read_text())["method_options"] == {"weights": [3, 1]}
    saved = load_file(out / WEIGHTS_FILE)
    assert saved and all(name.startswith("head.") for name in saved)  # the soup is rebuilt from the sources
    assert result.trainable_params == 0
    assert result.extra["weights"]["weights"] == [[0.75, 0.25], [0.75, 0.25]]

    sources = [load_file(folder / WEIGHTS_FILE) for folder in source_dirs]
    test = encode_splits(SPEC, splits, backbone, FAST.max_length).test
    reloaded = load_transfer_model(out, backbone, SPEC)
    try:
        predictions, _ = predict(reloaded, SPEC, test, EvalSettings(16))
        batch = unlabelled_batch()
        reloaded.eval()
        with torch.no_grad():
            logits = reloaded(batch, SPEC.name).logits
        for site in reloaded.sites:
            state = site.composition.adapter_state()
            for name in TENSORS:
                key = f"sites.{site.key}.{name}"
                torch.testing.assert_close(state[name], 0.75 * sources[0][key] + 0.25 * sources[1][key])
    finally:
        reloaded.detach()
    assert predictions.tolist() == result.predictions["test"]["predictions"]

    # the same model assembled by hand: single adapters of the averaged tensors and the saved head
    by_hand = AdapterModel(backbone)
    try:
        by_hand.set_compositions(lambda site: single_adapter_with(
            {name: 0.75 * sources[0][f"sites.{site.key}.{name}"] + 0.25 * sources[1][f"sites.{site.key}.{name}"]
             for name in TENSORS}))
        head = by_hand.add_head(SPEC)
        head.load_state_dict({name.removeprefix("head."): t for name, t in saved.items()})
        by_hand.eval()
        with torch.no_grad():
            torch.testing.assert_close(by_hand(batch, SPEC.name).logits, logits)
    finally:
        by_hand.detach()
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


def test_wrong_weights_fail_the_fit_before_training_and_leave_the_backbone_clean(backbone, source_dirs, tmp_path):
    with pytest.raises(ConfigError, match="has 3 value\\(s\\) but the fit combines 2 source adapters"):
        fit_transfer(backbone, SPEC, sentiment_splits(), "adaptersoup", source_dirs, FAST, tmp_path / "fit",
                     method_options={"weights": [1, 1, 1]})
    assert not (tmp_path / "fit").exists()
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


# -- the choice of sources by similarity (ScaLearn's setting) ------------------------------------
def test_the_top_k_eligible_sources_are_chosen_and_weighted_by_their_similarity():
    """Hand-computed: similarities 0.2, 0.9 (the target's own: not eligible), -0.1, 0.5, 0.5; top 3 are
    sources 3 and 4 (a tie: the earlier first) and 0, weighted 0.5 : 0.5 : 0.2 scaled to sum to 1."""
    similarities, eligible = [0.2, 0.9, -0.1, 0.5, 0.5], [True, False, True, True, True]
    assert similarity_choice(similarities, eligible, 3) == pytest.approx({3: 0.5 / 1.2, 4: 0.5 / 1.2, 0: 0.2 / 1.2})
    assert list(similarity_choice(similarities, eligible, 3)) == [3, 4, 0]
    assert similarity_choice(similarities, eligible, 5) == pytest.approx({3: 0.5 / 1.2, 4: 0.5 / 1.2, 0: 0.2 / 1.2,
                                                                          2: 0.0})  # a negative one gets 0
    assert similarity_choice(similarities, [True] * 5, 1) == {1: 1.0}
    assert similarity_choice([-0.3, -0.1], [True, True], 2) == {1: 0.5, 0: 0.5}  # none positive: uniform


def texts_of(backbone, tasks, examples, target=SPEC.name):
    names = [f"s{j}" for j in range(len(tasks))]
    return SourceTexts(backbone, target, sentiment_splits(12, 4).train, names, tasks, examples, 24)


def test_the_choice_leaves_out_the_targets_own_adapter_and_records_why(backbone, monkeypatch):
    tasks = ["sst2", SPEC.name, "cola", "mnli", "qnli", "qqp", "rte"]
    similarity = [0.2, 0.99, 0.4, 0.1, 0.3, 0.6, 0.5]
    monkeypatch.setattr(soup_module, "text_similarities", lambda *args: similarity)
    examples = [sentiment_splits(8, 4, seed=j).train for j in range(len(tasks))]
    options, record = choose_soup_sources({}, texts_of(backbone, tasks, examples))
    assert options["weights"] == pytest.approx([0.2 / 2.0, 0.0, 0.4 / 2.0, 0.0, 0.3 / 2.0, 0.6 / 2.0, 0.5 / 2.0])
    assert record["select"] == "similarity" and record["top_k"] == 5 and record["include_target"] is False
    assert record["similarity"] == dict(zip([f"s{j}" for j in range(7)], similarity))
    assert record["left_out"] == ["s1"] and list(record["chosen"]) == ["s5", "s6", "s2", "s4", "s0"]
    assert record["chosen"]["s5"] == pytest.approx(0.3)

    options, record = choose_soup_sources({"include_target": True, "top_k": 2}, texts_of(backbone, tasks, examples))
    assert list(record["chosen"]) == ["s1", "s5"] and record["left_out"] == []
    assert options["weights"][1] == pytest.approx(0.99 / 1.59)
    # no choice: fixed weights or every source uniformly, recorded as such
    assert choose_soup_sources({"select": "all"}, texts_of(backbone, tasks, None)) == ({"select": "all"}, {"select": "all"})
    assert choose_soup_sources({"weights": [1] * 7}, texts_of(backbone, tasks, None))[1] == {"select": "weights"}


def test_the_choice_measures_the_examples_and_is_the_same_every_time(backbone):
    examples = [sentiment_splits(10, 4, seed=3).train, sentiment_splits(30, 4, seed=4).train]
    texts = texts_of(backbone, ["sst2", "cola"], examples)
    options, record = choose_soup_sources({"sample_size": 8}, texts)
    expected = text_similarities(backbone, texts.target_examples, examples, 8, 24)
    assert list(record["similarity"].values()) == expected and record["sample_size"] == 8
    assert choose_soup_sources({"sample_size": 8}, texts) == (options, record)
    assert sum(options["weights"]) == pytest.approx(1.0)


@pytest.mark.parametrize("options, problem", [
    ({"select": "best"}, "option 'select' is 'best'; use one of similarity, all"),
    ({"top_k": 0}, "option 'top_k' is 0; use a whole number of at least 1"),
    ({"sample_size": "100"}, "option 'sample_size' is '100'; use a whole number of at least 1"),
    ({"include_target": "yes"}, "option 'include_target' is 'yes'; use true or false"),
    ({"select": "similarity", "weights": [1, 1]}, "options 'weights' and select: similarity both set the weights"),
])
def test_bad_choice_options_are_one_line_config_errors(options, problem, backbone):
    with pytest.raises(ConfigError, match=f"adaptersoup {problem}") as caught:
        choose_soup_sources(options, texts_of(backbone, ["sst2", "cola"], None))
    assert "\n" not in str(caught.value)


def test_a_choice_needs_the_sources_examples_and_a_source_besides_the_target(backbone):
    with pytest.raises(ConfigError, match="pass each source's training examples .* or set select: all"):
        choose_soup_sources({}, texts_of(backbone, ["sst2", "cola"], None))
    with pytest.raises(ConfigError, match="no other source; add sources, or set include_target: true"):
        choose_soup_sources({}, texts_of(backbone, [SPEC.name], [sentiment_splits(4, 4).train]))
    with pytest.raises(ConfigError, match="but s1 has none"):
        choose_soup_sources({}, texts_of(backbone, ["sst2", "cola"], [sentiment_splits(4, 4).train, []]))


def test_a_fit_chooses_by_similarity_records_it_and_reloads_without_the_data(backbone, source_dirs, tmp_path):
    """Two sources and the target's own adapter (a source of the target's task): by default the own
    one is left out and the two others are weighted by similarity; the artifact holds the weights, so
    the fit reloads from the source folders alone."""
    own = rewritten_source(source_dirs[0], tmp_path / "own", lambda c: c | {"task": c["task"] | {"name": SPEC.name}})
    splits = sentiment_splits()
    examples = [sentiment_splits(24, 8, seed=j + 1).train for j in range(len(SOURCE_TASKS))] + [splits.train]
    result = fit_transfer(backbone, SPEC, splits, "adaptersoup", [*source_dirs, own], FAST, tmp_path / "fit",
                          source_examples=examples)
    choice = result.extra["weights"]["choice"]
    assert choice["left_out"] == [SPEC.name] and list(choice["chosen"]) != [] and set(choice["chosen"]) == set(SOURCE_TASKS)
    similarity = text_similarities(backbone, splits.train, examples, 1000, FAST.max_length)
    assert list(choice["similarity"].values()) == pytest.approx(similarity)
    expected = [max(s, 0) / sum(max(t, 0) for t in similarity[:2]) for s in similarity[:2]] + [0.0]
    assert result.extra["weights"]["weights"][0] == pytest.approx(expected)
    config = json.loads((tmp_path / "fit" / CONFIG_FILE).read_text())
    assert config["source_choice"] == choice and config["method_options"]["weights"] == pytest.approx(expected)

    reloaded = load_transfer_model(tmp_path / "fit", backbone, SPEC)
    try:
        assert all(site.composition.weights == pytest.approx(expected) for site in reloaded.sites)
    finally:
        reloaded.detach()
    with pytest.raises(ConfigError, match="training examples of 1 source\\(s\\) for 3 source adapter"):
        fit_transfer(backbone, SPEC, splits, "adaptersoup", [*source_dirs, own], FAST, tmp_path / "again",
                     source_examples=examples[:1])
