"""fit_transfer end to end on a tiny random BERT with tiny source adapters trained here."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE
from peft_core.compositions import TRANSFER_METHODS, get_method
from peft_core.configs import EvalSettings, TrainConfig
from peft_core.errors import ArtifactError, ConfigError
from peft_core.jobs import encode_splits, final_metrics
from peft_core.layernorms import layernorm_parameter_count, layernorm_parameters
from peft_core.prompts import description_embeddings
from peft_core.sites import AdapterSite
from peft_core.task_specs import get_task
from peft_core.parameter_counts import transfer_parameter_count
from peft_core.transfer import build_transfer_model, fit_transfer, load_sources, load_transfer_model, transfer_parameters
from peft_core.weights_plot import plot_weights_heatmap

from tests.helpers.core import HIDDEN as D
from tests.helpers.core import VOCAB_SIZE, sentiment_splits
from tests.helpers.transfer import ADAPTER, FAST, SOURCE_TASKS, rewritten_source

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = get_task("demo_sentiment")


def no_sites_left(backbone):
    return not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


# -- end to end --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(TRANSFER_METHODS))
def test_fit_transfer_end_to_end(method, backbone, source_dirs, tmp_path):
    splits = sentiment_splits()
    source_examples = [sentiment_splits(24, 8, seed=seed + 1).train for seed in range(len(SOURCE_TASKS))]  # AdapterSoup's
    result = fit_transfer(backbone, TARGET, splits, method, source_dirs, FAST, tmp_path / "out",
                          source_examples=source_examples)
    assert no_sites_left(backbone)
    assert {"validation_accuracy", "test_accuracy"} <= set(result.metrics)
    assert len(result.history) >= 1 and result.artifact_dir == tmp_path / "out"

    prompt_length = len(description_embeddings(backbone, TARGET.description))
    assert result.trainable_params == transfer_parameter_count(
        method, D, 2, 2, ADAPTER, prompt_length=prompt_length,
        backbone_layernorm_params=layernorm_parameter_count(backbone.model))  # PEMT trains them too
    assert result.head_params == D * 2 + 2

    config = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config["method"] == method
    assert [s["name"] for s in config["sources"]] == list(SOURCE_TASKS)
    assert all(len(s["fingerprint"]) == 16 and s["adapter_dir"] for s in config["sources"])

    report = result.extra["weights"]
    assert report["sources"] == list(SOURCE_TASKS) and report["sites"] == ["0.ffn", "1.ffn"]
    assert all(len(row) == 2 for row in report["weights"])
    if method in ("adapterfusion", "pemt"):  # attention / gate probabilities averaged over the evaluation
        assert all(sum(row) == pytest.approx(1.0) for row in report["weights"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])  # no plot: the unit draws it
    json.dumps(result.extra)

    reloaded = load_transfer_model(tmp_path / "out", backbone, TARGET)
    try:
        again = final_metrics(reloaded, TARGET, encode_splits(TARGET, splits, backbone, FAST.max_length), EvalSettings(16))
    finally:
        reloaded.detach()
    assert again == result.metrics


@pytest.mark.parametrize("method", list(TRANSFER_METHODS))
def test_gradients_reach_only_the_trainable_parts(method, backbone, source_dirs):
    torch.manual_seed(0)
    model = build_transfer_model(backbone, TARGET, load_sources(source_dirs, backbone, TARGET.name), get_method(method))
    try:
        batch = {"input_ids": torch.randint(5, VOCAB_SIZE, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long),
                 "labels": torch.tensor([0, 1, 0, 1])}
        model.train()
        model(batch, TARGET.name).loss.backward()
        trainable = {id(p) for p in transfer_parameters(model, TARGET.name).values()}
        with_grad = {id(p) for p in model.parameters() if p.grad is not None}
        assert with_grad == trainable  # model.parameters() holds the backbone and the source banks too
        assert all(p.grad is None for site in model.sites for p in site.composition.bank.parameters())
        assert all(p.grad is None for p in backbone.model.embeddings.word_embeddings.parameters())
    finally:
        model.detach()


@pytest.mark.parametrize("method, rate", [("scalearn", 6e-3), ("scalearn_plus_plus", 6e-3), ("adapterfusion", 5e-5),
                                          ("pemt", 3e-4), ("average", FAST.learning_rate)])
def test_a_fit_runs_and_records_the_methods_published_rate(method, rate, backbone, source_dirs, tmp_path):
    assert get_method(method).train_config(FAST).learning_rate == rate
    if method in ("scalearn", "average"):  # one fit of a method with and one without a rate of its own
        fit_transfer(backbone, TARGET, sentiment_splits(), method, source_dirs, FAST, tmp_path / "out")
        assert json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["training"]["learning_rate"] == rate


def test_a_given_rate_replaces_the_published_one(backbone, source_dirs, tmp_path):
    assert get_method("adapterfusion").train_config(FAST, 1e-3).learning_rate == 1e-3
    fit_transfer(backbone, TARGET, sentiment_splits(), "adapterfusion", source_dirs, FAST, tmp_path / "out",
                 learning_rate=1e-3)
    assert json.loads((tmp_path / "out" / CONFIG_FILE).read_text())["training"]["learning_rate"] == 1e-3


def test_the_head_can_start_from_a_sources_head(backbone, source_dirs, tmp_path):
    still = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-12)  # the head stays where it started
    source_head = {k: v for k, v in load_file(source_dirs[0] / WEIGHTS_FILE).items() if k.startswith("head.")}
    fitted = {}
    for head_from in ("sst2", None):
        out = tmp_path / str(head_from)
        fit_transfer(backbone, TARGET, sentiment_splits(), "scalearn", source_dirs, still, out, learning_rate=1e-12,
                     head_from=head_from)
        fitted[head_from] = {k: v for k, v in load_file(out / WEIGHTS_FILE).items() if k.startswith("head.")}
    assert json.loads((tmp_path / "sst2" / CONFIG_FILE).read_text())["head_from"] == "sst2"
    assert all(torch.allclose(fitted["sst2"][k], v, atol=1e-6) for k, v in source_head.items())
    assert not torch.allclose(fitted[None]["head.linear.weight"], source_head["head.linear.weight"])


def test_a_head_from_an_unknown_source_is_a_config_error(backbone, source_dirs, tmp_path):
    with pytest.raises(ConfigError, match="head_from names source 'mnli'.*sst2, cola"):
        fit_transfer(backbone, TARGET, sentiment_splits(), "scalearn", source_dirs, FAST, tmp_path / "out",
                     head_from="mnli")
    assert no_sites_left(backbone)


# -- errors a user can act on ------------------------------------------------------------------
def test_no_sources_is_a_config_error(backbone, tmp_path):
    with pytest.raises(ConfigError, match="target demo_sentiment has no source adapters"):
        fit_transfer(backbone, TARGET, sentiment_splits(), "scalearn", [], FAST, tmp_path / "out")


def test_unknown_method_is_a_config_error(backbone, source_dirs, tmp_path):
    with pytest.raises(ConfigError, match="unknown transfer method 'fusion'"):
        fit_transfer(backbone, TARGET, sentiment_splits(), "fusion", source_dirs, FAST, tmp_path / "out")


def test_source_from_another_backbone_is_named(source_dirs, tiny_backbone, tmp_path):
    other = tiny_backbone(seed=1)
    with pytest.raises(ArtifactError, match="source 'sst2' for target demo_sentiment: .*trained on backbone"):
        fit_transfer(other, TARGET, sentiment_splits(), "scalearn", source_dirs, FAST, tmp_path / "out")
    assert no_sites_left(other)


def test_source_with_another_placement_or_shape_is_named(backbone, source_dirs, tmp_path):
    houlsby = rewritten_source(source_dirs[1], tmp_path / "houlsby",
                               lambda c: c | {"adapter": c["adapter"] | {"placement": "houlsby"}})
    with pytest.raises(ArtifactError, match="source 'cola' .*placement 'houlsby'"):
        load_sources([source_dirs[0], houlsby], backbone, TARGET.name)
    wider = rewritten_source(source_dirs[1], tmp_path / "wider",
                             lambda c: c | {"adapter": c["adapter"] | {"reduction_factor": 2}})
    with pytest.raises(ArtifactError, match="source 'cola' .*reduction_factor 2"):
        load_sources([source_dirs[0], wider], backbone, TARGET.name)
    with_norm = rewritten_source(source_dirs[1], tmp_path / "norm",
                                 lambda c: c | {"adapter": c["adapter"] | {"layer_norm_after": True}})
    with pytest.raises(ArtifactError, match="source 'cola' .*LayerNorm after its adapter"):
        load_sources([source_dirs[0], with_norm], backbone, TARGET.name)
    full = rewritten_source(source_dirs[1], tmp_path / "full", lambda c: c | {"adapter": None, "method": "full_finetune"})
    with pytest.raises(ArtifactError, match="'full_finetune' artifact, not an adapter"):
        load_sources([full], backbone, TARGET.name)


def test_pemt_needs_sources_with_prompts(backbone, source_dirs, tmp_path):
    bare = rewritten_source(source_dirs[1], tmp_path / "bare",
                            change_tensors=lambda t: {k: v for k, v in t.items() if k != "prompt.embeddings"})
    with pytest.raises(ConfigError, match="needs sources trained with task prompts, but 'cola'.*add 'pemt'"):
        fit_transfer(backbone, TARGET, sentiment_splits(), "pemt", [source_dirs[0], bare], FAST,
                     tmp_path / "out")
    assert no_sites_left(backbone)


# -- PEMT's options: the target adapter's placement and the backbone's LayerNorms -----------------
def layernorm_values(backbone) -> dict[str, torch.Tensor]:
    return {path: p.detach().clone() for path, p in layernorm_parameters(backbone).items()}


def eval_logits(model, backbone) -> torch.Tensor:
    batch = dict(backbone.tokenizer(["the film was good", "we hated the very dull meal"], padding=True,
                                    return_tensors="pt"))
    model.eval()
    with torch.no_grad():
        return model(batch, TARGET.name).logits


def reloaded_logits(folder, backbone) -> torch.Tensor:
    model = load_transfer_model(folder, backbone, TARGET)
    try:
        return eval_logits(model, backbone)
    finally:
        model.detach()


def test_pemt_records_the_released_codes_defaults(backbone, source_dirs, tmp_path):
    fit_transfer(backbone, TARGET, sentiment_splits(), "pemt", source_dirs, FAST, tmp_path / "out")
    config = json.loads((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config["method_options"] == {"target_adapter": "sequential", "train_layernorms": True}


@pytest.mark.parametrize("target_adapter", ["sequential", "parallel"])
@pytest.mark.parametrize("train_layernorms", [True, False])
def test_a_saved_pemt_fit_of_each_option_loads_back_and_predicts_the_same(target_adapter, train_layernorms, backbone,
                                                                          source_dirs, tmp_path):
    options = {"target_adapter": target_adapter, "train_layernorms": train_layernorms}
    pristine = layernorm_values(backbone)
    splits = sentiment_splits()
    out = tmp_path / "out"
    result = fit_transfer(backbone, TARGET, splits, "pemt", source_dirs, FAST, out, method_options=options)
    # the shared backbone is handed back as loaded, its LayerNorms frozen again
    assert all(torch.equal(p, pristine[path]) and not p.requires_grad
               for path, p in layernorm_parameters(backbone).items())
    assert json.loads((out / CONFIG_FILE).read_text())["method_options"] == options

    saved = load_file(out / WEIGHTS_FILE)
    saved_layernorms = {k[len("backbone."):]: v for k, v in saved.items() if k.startswith("backbone.")}
    if train_layernorms:  # every LayerNorm of the backbone, under its path as loaded, moved by training
        assert saved_layernorms.keys() == pristine.keys()
        assert all(not torch.equal(v, pristine[path]) for path, v in saved_layernorms.items())
    else:
        assert saved_layernorms == {}

    model = load_transfer_model(out, backbone, TARGET)
    try:
        assert all(c.sequential == (target_adapter == "sequential") for c in (s.composition for s in model.sites))
        assert all(torch.equal(p, saved_layernorms.get(path, pristine[path]))  # applied to the backbone while loaded
                   for path, p in layernorm_parameters(backbone).items())
        again = final_metrics(model, TARGET, encode_splits(TARGET, splits, backbone, FAST.max_length), EvalSettings(16))
        logits = eval_logits(model, backbone)
    finally:
        model.detach()
    assert again == result.metrics
    assert all(torch.equal(p, pristine[path]) for path, p in layernorm_parameters(backbone).items())

    other = "parallel" if target_adapter == "sequential" else "sequential"
    flipped = rewritten_source(out, tmp_path / "flipped", change_config=lambda c: c | {
        "method_options": options | {"target_adapter": other}})
    assert not torch.allclose(reloaded_logits(flipped, backbone), logits)  # the recorded placement is the one used
    if train_layernorms:
        without = rewritten_source(out, tmp_path / "without", change_tensors=lambda t: {
            k: (pristine[k[len("backbone."):]] if k.startswith("backbone.") else v) for k, v in t.items()})
        assert not torch.equal(reloaded_logits(without, backbone), logits)  # the saved LayerNorms are applied
    else:  # a fit saved before these options existed recorded none: it ran with the parallel adapter, no LayerNorms
        legacy = rewritten_source(out, tmp_path / "legacy", change_config=lambda c: c | {"method_options": {}})
        assert torch.equal(reloaded_logits(legacy, backbone), logits) == (target_adapter == "parallel")
    assert no_sites_left(backbone)


def test_reloading_after_a_source_changed_fails_clearly(backbone, source_dirs, tmp_path):
    copy = tmp_path / "sst2"
    shutil.copytree(source_dirs[0], copy)
    fit_transfer(backbone, TARGET, sentiment_splits(), "average", [copy], FAST, tmp_path / "out")
    rewritten_source(copy, copy, change_tensors=lambda t: {k: v + 1 for k, v in t.items()})
    with pytest.raises(ArtifactError, match="source 'sst2' .*changed since"):
        load_transfer_model(tmp_path / "out", backbone, TARGET)
    assert no_sites_left(backbone)


def test_heatmap_skips_a_report_without_weights(tmp_path):
    assert plot_weights_heatmap({"sites": ["0.ffn"], "weights": [None]}, ["a"], tmp_path / "w.png") is None
    assert not (tmp_path / "w.png").exists()
