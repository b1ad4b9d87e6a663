"""PEFT LoRA folders in and out (#24.3), against Hugging Face PEFT itself on tiny random backbones: an
imported LoRA computes PEFT's hidden states, an exported unit loads in `PeftModel.from_pretrained` with
our model's hidden states and logits, and what does not map is a one-line error."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertForSequenceClassification

from peft_core.artifact_layout import IMPORTED_LORA
from peft_core.artifacts import WEIGHTS_FILE, read_artifact_config
from peft_core.compositions import get_method
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ArtifactError, ConfigError
from peft_core.inference import load_fitted_model
from peft_core.peft_export import HEAD_FILE, NOTE_FILE, export_peft_lora
from peft_core.peft_folder import PEFT_CONFIG_FILE
from peft_core.peft_import import import_peft_lora
from peft_core.adapter_jobs import train_adapter
from peft_core.task_specs import get_task
from peft_core.transfer import build_transfer_model, fit_transfer, load_sources

from tests.helpers.core import HIDDEN, family_config, sentiment_splits, tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = get_task("demo_sentiment")
FAST = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, learning_rate=1e-2, max_steps_per_epoch=2,
                   precision="fp32")
TARGETS = {"bert": ["query", "value", "intermediate.dense"], "distilbert": ["q_lin", "v_lin", "lin1"],
           "deberta-v2": ["query_proj", "value_proj"], "t5": ["q", "v", "wi_0"], "llama": ["q_proj", "v_proj", "up_proj"],
           "gpt2": ["c_attn", "c_fc"]}  # GPT-2's are Conv1D modules (weight (in, out))


def saved_peft_lora(model, folder, seed=0, **settings):
    """A PEFT LoRA on `model` (changed in place) with random B (PEFT starts it at zero), saved in `folder`."""
    peft_model = get_peft_model(model, LoraConfig(**{"r": 2, "lora_alpha": 6, "target_modules": ["query", "value"],
                                                     **settings}))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return peft_model.eval()


def peft_hidden(peft_model, batch):
    with torch.no_grad():
        return peft_model(**batch, output_hidden_states=True).hidden_states[-1]


def hidden_over(backbone, sources, batch, method="average"):
    """The last hidden state with `method` over these source artifacts on the backbone."""
    model = build_transfer_model(backbone, SPEC, load_sources(sources, backbone, SPEC.name), get_method(method))
    try:
        with torch.no_grad():
            return backbone.model(**batch).last_hidden_state
    finally:
        model.detach()


def edited(folder, **settings):
    config = folder / PEFT_CONFIG_FILE
    config.write_text(json.dumps(json.loads(config.read_text()) | settings))
    return folder


def assert_one_line(error) -> None:
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def imported_sources(tiny_backbone, tmp_path_factory):
    """(backbone, two imported LoRA sources) on a tiny BERT."""
    backbone, root = tiny_backbone(), tmp_path_factory.mktemp("imported")
    for seed in range(2):
        saved_peft_lora(copy.deepcopy(backbone.model), root / f"peft{seed}", seed=seed)
        import_peft_lora(root / f"peft{seed}", backbone, get_task(("sst2", "cola")[seed]), root / f"source{seed}")
    return backbone, [root / "source0", root / "source1"]


# -- import ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(TARGETS))
def test_an_imported_lora_computes_peft_s_hidden_states(family, tiny_backbone, tmp_path):
    backbone = tiny_backbone(family)
    peft_model = saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft", target_modules=TARGETS[family])
    import_peft_lora(tmp_path / "peft", backbone, SPEC, tmp_path / "source")
    batch = tiny_batch(backbone)
    torch.testing.assert_close(hidden_over(backbone, [tmp_path / "source"], batch), peft_hidden(peft_model, batch),
                               rtol=0, atol=1e-5)
    config = read_artifact_config(tmp_path / "source")
    assert config["method"] == IMPORTED_LORA and config["task"]["name"] == SPEC.name
    assert config["adapter"]["lora_rank"] == 2 and config["adapter"]["lora_alpha"] == 6


@pytest.mark.parametrize("settings, adapter", [
    ({"use_rslora": True}, None),
    ({"rank_pattern": {"value": 4}, "alpha_pattern": {"layer.1.attention.self.query": 5}}, None),
    ({"layers_to_transform": [1]}, None),
    ({}, AdapterConfig(kind="lora", lora_rank=4, lora_alpha=16, lora_targets=("query", "key", "value"))),
], ids=["rslora", "patterns", "some-layers", "into-our-config"])
def test_per_module_ranks_and_scales_import_exactly(settings, adapter, tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    peft_model = saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft", **settings)
    import_peft_lora(tmp_path / "peft", backbone, SPEC, tmp_path / "source", adapter=adapter)
    batch = tiny_batch(backbone)
    torch.testing.assert_close(hidden_over(backbone, [tmp_path / "source"], batch), peft_hidden(peft_model, batch),
                               rtol=0, atol=1e-5)
    if adapter is not None:
        assert read_artifact_config(tmp_path / "source")["adapter"] == adapter.to_dict()


def test_a_classifier_lora_imports_under_its_task_model_prefix_and_leaves_its_head_behind(tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    classifier = BertForSequenceClassification(family_config("bert"))
    classifier.bert.load_state_dict(backbone.model.state_dict())
    peft_model = saved_peft_lora(classifier, tmp_path / "peft", task_type="SEQ_CLS")
    import_peft_lora(tmp_path / "peft", backbone, SPEC, tmp_path / "source")
    batch = tiny_batch(backbone)
    torch.testing.assert_close(hidden_over(backbone, [tmp_path / "source"], batch), peft_hidden(peft_model, batch),
                               rtol=0, atol=1e-5)
    assert read_artifact_config(tmp_path / "source")["imported_from"]["head_left_behind"] == [
        "classifier.bias", "classifier.weight"]
    with pytest.raises(ArtifactError, match="has no task head") as error:
        load_fitted_model(tmp_path / "source", backbone)
    assert_one_line(error)


def test_an_imported_source_has_no_head_to_start_from_and_no_prompt_for_pemt(imported_sources, tmp_path):
    backbone, sources = imported_sources
    with pytest.raises(ArtifactError, match="'sst2' .* has no task head") as error:
        fit_transfer(backbone, SPEC, sentiment_splits(16, 8), "scalearn", sources, FAST, tmp_path / "fit",
                     head_from="sst2")
    assert_one_line(error)
    with pytest.raises(ConfigError, match="needs sources trained with task prompts") as error:
        fit_transfer(backbone, SPEC, sentiment_splits(16, 8), "pemt", sources, FAST, tmp_path / "fit")
    assert_one_line(error)


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, named", [
    ({"use_dora": True}, "DoRA"), ({"bias": "all"}, "bias='none'"), ({"modules_to_save": ["pooler"]}, "pooler"),
    ({"target_modules": ["query", "pooler.dense"]}, "pooler.dense"),
    ({"target_modules": ["word_embeddings"]}, "word_embeddings"),
])
def test_what_is_no_plain_lora_on_our_sites_is_refused_in_one_line(settings, named, tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft", **settings)
    with pytest.raises(ArtifactError, match=named) as error:
        import_peft_lora(tmp_path / "peft", backbone, SPEC, tmp_path / "source")
    assert_one_line(error)
    assert not (tmp_path / "source").exists()


@pytest.mark.parametrize("settings, named", [
    ({"base_model_name_or_path": "bert-base-uncased"}, "trained on base model 'bert-base-uncased'"),
    ({"init_lora_weights": "pissa"}, "changes the base model's weights"),
    ({"layer_replication": [[0, 2]]}, "sets layer_replication"),
    ({"peft_type": "IA3"}, "not a LoRA"),
])
def test_another_base_model_or_lora_variant_in_the_config_is_refused(settings, named, tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft")
    with pytest.raises(ArtifactError, match=named) as error:
        import_peft_lora(edited(tmp_path / "peft", **settings), backbone, SPEC, tmp_path / "source")
    assert_one_line(error)


def test_a_recorded_base_model_name_is_accepted_when_named(tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft")
    folder = edited(tmp_path / "peft", base_model_name_or_path="org/tiny-bert")  # the backbone's own name
    import_peft_lora(folder, backbone, SPEC, tmp_path / "a")
    edited(folder, base_model_name_or_path="hub/copy-of-it")
    import_peft_lora(folder, backbone, SPEC, tmp_path / "b", base_model="hub/copy-of-it")


def test_a_lora_of_another_width_is_refused_by_its_shapes(tiny_backbone, tmp_path):
    config = family_config("bert")
    config.hidden_size = HIDDEN + 16
    wider = AutoModel.from_config(config)
    saved_peft_lora(wider, tmp_path / "peft")
    with pytest.raises(ArtifactError, match="trained on another base model") as error:
        import_peft_lora(tmp_path / "peft", tiny_backbone(), SPEC, tmp_path / "source")
    assert_one_line(error)


def test_a_config_that_cannot_hold_the_lora_is_a_config_error(tiny_backbone, tmp_path):
    backbone = tiny_backbone()
    saved_peft_lora(copy.deepcopy(backbone.model), tmp_path / "peft", r=4)
    with pytest.raises(ConfigError, match="rank at least 4") as error:
        import_peft_lora(tmp_path / "peft", backbone, SPEC, tmp_path / "source",
                         adapter=AdapterConfig(kind="lora", lora_rank=2))
    assert_one_line(error)


# -- export ----------------------------------------------------------------------------------------
def assert_peft_loads_the_same_outputs(folder, backbone, exported):
    fitted = load_fitted_model(folder, backbone)
    batch = tiny_batch(backbone)
    try:
        with torch.no_grad():
            hidden = backbone.model(**batch).last_hidden_state
            logits = fitted.model(batch, fitted.spec.name).logits
    finally:
        fitted.close()
    peft_model = PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(exported)).eval()
    theirs = peft_hidden(peft_model, batch)
    torch.testing.assert_close(theirs, hidden, rtol=0, atol=1e-5)
    head = load_file(exported / HEAD_FILE)
    pooled = backbone.pool(theirs, batch["attention_mask"])
    torch.testing.assert_close(pooled @ head["weight"].T + head["bias"], logits, rtol=0, atol=1e-5)
    assert json.loads((exported / NOTE_FILE).read_text())["backbone"]["fingerprint"] == backbone.fingerprint


@pytest.mark.parametrize("method, options", [
    ("average", None), ("adaptersoup", {"weights": [0.25, 0.75]}), ("scalearn", None),
    ("scalearn_uniform_plus_plus", None),
])
def test_a_fit_over_lora_sources_exports_as_one_lora_peft_loads(method, options, imported_sources, tmp_path):
    backbone, sources = imported_sources
    fit_transfer(backbone, SPEC, sentiment_splits(16, 8), method, sources, FAST, tmp_path / "fit",
                 method_options=options)
    exported = export_peft_lora(tmp_path / "fit", backbone, tmp_path / "peft")
    assert_peft_loads_the_same_outputs(tmp_path / "fit", backbone, exported)
    assert json.loads((exported / PEFT_CONFIG_FILE).read_text())["r"] == 4  # two sources of rank 2


def test_a_source_without_weight_at_one_site_exports_with_a_smaller_rank_there(imported_sources, tmp_path):
    backbone, sources = imported_sources
    fit_transfer(backbone, SPEC, sentiment_splits(16, 8), "scalearn", sources, FAST, tmp_path / "fit")
    weights = tmp_path / "fit" / WEIGHTS_FILE
    tensors = load_file(weights)
    tensors["sites.1.value.omega"][0] = 0.0
    save_file(tensors, weights)
    exported = export_peft_lora(tmp_path / "fit", backbone, tmp_path / "peft")
    assert_peft_loads_the_same_outputs(tmp_path / "fit", backbone, exported)
    config = json.loads((exported / PEFT_CONFIG_FILE).read_text())
    assert (config["r"], list(config["rank_pattern"].values())) == (4, [2])
    import_peft_lora(exported, backbone, SPEC, tmp_path / "again")  # and it comes back in as the same update
    batch = tiny_batch(backbone)
    torch.testing.assert_close(hidden_over(backbone, [tmp_path / "again"], batch), peft_hidden(
        PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(exported)).eval(), batch), rtol=0, atol=1e-5)
    with pytest.raises(ArtifactError, match="imported from the PEFT folder") as error:
        export_peft_lora(tmp_path / "again", backbone, tmp_path / "peft2")
    assert_one_line(error)


def test_a_trained_lora_adapter_exports_with_its_own_rank(imported_sources, tmp_path):
    backbone, _ = imported_sources
    lora = AdapterConfig(kind="lora", lora_rank=2, lora_alpha=4, lora_targets=("value", "ffn_out"))
    train_adapter(backbone, SPEC, sentiment_splits(16, 8), lora, FAST, tmp_path / "adapter")
    exported = export_peft_lora(tmp_path / "adapter", backbone, tmp_path / "peft")
    assert_peft_loads_the_same_outputs(tmp_path / "adapter", backbone, exported)
    assert json.loads((exported / PEFT_CONFIG_FILE).read_text())["r"] == 2


@pytest.mark.parametrize("family, targets", [("gpt2", ("qkv", "ffn_out")), ("llama", ("query", "value", "ffn_in"))])
def test_a_lora_adapter_on_a_decoder_exports_and_peft_loads_it(family, targets, tiny_backbone, tmp_path):
    backbone = tiny_backbone(family)
    lora = AdapterConfig(kind="lora", lora_rank=2, lora_alpha=4, lora_targets=targets)
    train_adapter(backbone, SPEC, sentiment_splits(16, 8), lora, FAST, tmp_path / "adapter")
    exported = export_peft_lora(tmp_path / "adapter", backbone, tmp_path / "peft")
    assert_peft_loads_the_same_outputs(tmp_path / "adapter", backbone, exported)
    assert json.loads((exported / PEFT_CONFIG_FILE).read_text())["fan_in_fan_out"] == (family == "gpt2")


def test_what_is_no_single_lora_does_not_export(imported_sources, tmp_path):
    backbone, sources = imported_sources
    fit_transfer(backbone, SPEC, sentiment_splits(16, 8), "adapterfusion", sources, FAST, tmp_path / "fusion")
    with pytest.raises(ArtifactError, match="per token or example") as error:
        export_peft_lora(tmp_path / "fusion", backbone, tmp_path / "peft")
    assert_one_line(error)
    train_adapter(backbone, SPEC, sentiment_splits(16, 8), AdapterConfig(reduction_factor=4), FAST, tmp_path / "bn")
    with pytest.raises(ArtifactError, match="bottleneck adapters stay adapterflow artifacts") as error:
        export_peft_lora(tmp_path / "bn", backbone, tmp_path / "peft")
    assert_one_line(error)
    assert not (tmp_path / "peft").exists()
