"""LoRA as an adapter kind: its config, sites, bank and every composition over LoRA sources, against
hand-computed references on small tensors and tiny random backbones; training, saving, reloading and
transfer end to end on a tiny BERT."""

import copy
import json

import pytest
import torch
from torch import nn

from peft_core.adapter_kinds import placement_of
from peft_core.artifacts import CONFIG_FILE
from peft_core.compositions import TRANSFER_METHODS, SingleAdapter, get_method
from peft_core.compositions.soup import AdapterSoup
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ArtifactError, BackboneError, ConfigError
from peft_core.inference import load_fitted_model, predict_logits
from peft_core.lora import LoraBank
from peft_core.model import AdapterModel
from peft_core.multitask import build_multitask_model
from peft_core.parameter_counts import transfer_parameter_count
from peft_core.adapter_jobs import evaluate_adapter, train_adapter
from peft_core.sites import AdapterSite, ForwardContext, SiteView
from peft_core.task_specs import get_task
from peft_core.transfer import fit_transfer

from tests.helpers.core import sentiment_examples, sentiment_splits, tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread")

LORA = AdapterConfig(kind="lora", lora_rank=2, lora_alpha=6.0)  # scale 3
IN, OUT = 6, 10  # a site whose input and output widths differ catches a transposed matrix


def random_lora_bank(k, config=LORA, seed=0, in_features=IN, out_features=OUT):
    torch.manual_seed(seed)
    bank = LoraBank(k, in_features, out_features, config)
    with torch.no_grad():
        bank.up_weight.normal_(0, 0.5)  # B starts at zero; make every source's update matter
    return bank.requires_grad_(False)


def source_deltas(bank, x):
    """Each source's update by hand, `s · x A_jᵀ B_jᵀ`: (..., K, out)."""
    states = [bank.adapter_state(j) for j in range(bank.num_adapters)]
    return torch.stack([bank.scale * x @ s["lora_A"].T @ s["lora_B"].T for s in states], dim=-2)


# -- config --------------------------------------------------------------------------------------
def test_a_bottleneck_config_gives_exactly_the_dict_it_gave_before_lora():
    old = {"placement": "pfeiffer", "reduction_factor": 16, "activation": "relu", "init_std": 0.02,
           "layer_norm_after": False}
    assert AdapterConfig().to_dict() == old
    assert AdapterConfig(lora_rank=4, lora_targets=("key",)).to_dict() == old  # LoRA settings of a bottleneck: none
    assert AdapterConfig(**old).kind == "bottleneck"  # a saved artifact without `kind`


def test_a_lora_config_records_its_own_settings_and_round_trips_through_json():
    config = AdapterConfig(kind="lora", lora_rank=4, lora_alpha=8, lora_dropout=0.1, lora_targets=["value", "ffn_out"])
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved == {"kind": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.1,
                     "lora_targets": ["value", "ffn_out"]}
    assert AdapterConfig(**saved) == config and config.lora_scale == 2.0


@pytest.mark.parametrize("settings, named", [
    ({"lora_targets": ("query", "gate")}, "lora_targets"), ({"lora_targets": ()}, "lora_targets"),
    ({"lora_rank": 0}, "lora_rank"), ({"lora_dropout": 1.0}, "lora_dropout"), ({"layer_norm_after": True}, "layer_norm"),
])
def test_bad_lora_settings_are_one_line_config_errors(settings, named):
    with pytest.raises(ConfigError, match=named) as error:
        AdapterConfig(kind="lora", **settings)
    assert "\n" not in str(error.value)


# -- the bank ------------------------------------------------------------------------------------
def test_a_fresh_lora_starts_at_zero_with_peft_init():
    bank = LoraBank(3, IN, OUT, LORA)
    assert torch.all(bank.up_weight == 0)
    assert bank.down_weight.abs().max() <= 1 / IN ** 0.5 and bank.down_weight.std() > 0  # kaiming-uniform, a = √5
    assert torch.all(bank(torch.randn(2, 4, IN)) == 0)


def test_outputs_and_mix_equal_the_hand_computed_updates():
    bank, x = random_lora_bank(3), torch.randn(2, 4, IN)
    deltas = source_deltas(bank, x)
    torch.testing.assert_close(bank.outputs(x), deltas)
    omega = torch.randn(3, OUT)
    torch.testing.assert_close(bank.mix(x, omega), (omega * deltas).sum(-2))
    gates = torch.softmax(torch.randn(2, 3), -1)
    torch.testing.assert_close(bank.mix_per_example(x, gates), torch.einsum("bk,btko->bto", gates, deltas))


def test_lora_dropout_drops_input_features_in_training_only():
    bank = random_lora_bank(1, AdapterConfig(kind="lora", lora_rank=2, lora_alpha=6.0, lora_dropout=0.5))
    x = torch.randn(4, IN)
    torch.testing.assert_close(bank.eval()(x), source_deltas(bank, x)[:, 0])
    torch.manual_seed(0)
    dropped = bank.train()(x)
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, source_deltas(bank, torch.nn.functional.dropout(x, 0.5))[:, 0])
    assert not torch.allclose(dropped, source_deltas(bank, x)[:, 0])


def test_adapter_state_uses_peft_shapes_and_moves_exactly_one_adapter():
    source, target = random_lora_bank(3, seed=1), random_lora_bank(3, seed=2)
    state = source.adapter_state(1)
    assert state["lora_A"].shape == (2, IN) and state["lora_B"].shape == (OUT, 2)
    before = target.adapter_state(0)
    target.load_adapter_state(2, state)
    x = torch.randn(5, IN)
    torch.testing.assert_close(target.outputs(x)[:, 2], source.outputs(x)[:, 1])
    assert all(torch.equal(before[n], target.adapter_state(0)[n]) for n in before)


# -- sites ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["bert", "distilbert", "deberta-v2"])
def test_lora_sites_wrap_every_target_and_a_fresh_lora_is_a_pass_through(family, tiny_backbone):
    backbone = tiny_backbone(family)
    config = AdapterConfig(kind="lora", lora_targets=("query", "key", "value", "attn_out", "ffn_in", "ffn_out"))
    batch = tiny_batch(backbone)
    with torch.no_grad():
        bare = backbone.model(**batch).last_hidden_state
    originals = [layer.get_submodule(getattr(backbone.layout, role)) for layer in backbone.layers()
                 for role in config.lora_targets]
    model = AdapterModel(backbone, placement_of(config))
    try:
        model.set_compositions(lambda site: SingleAdapter.at(site, config))
        assert [s.key for s in model.sites] == [f"{i}.{role}" for i in range(2) for role in config.lora_targets]
        assert [s.base_layer for s in model.sites] == originals
        assert [(s.in_features, s.out_features) for s in model.sites[:6]] == [(32, 32)] * 4 + [(32, 64), (64, 32)]
        with torch.no_grad():
            torch.testing.assert_close(backbone.model(**batch).last_hidden_state, bare, rtol=0, atol=0)
    finally:
        model.detach()
    assert [layer.get_submodule(getattr(backbone.layout, role)) for layer in backbone.layers()
            for role in config.lora_targets] == originals


def test_a_lora_site_adds_the_scaled_low_rank_update_to_its_module(tiny_backbone):
    backbone = tiny_backbone()
    model = AdapterModel(backbone, placement_of(LORA))
    try:
        model.set_compositions(lambda site: SingleAdapter.at(site, LORA))
        site = model.sites[1]  # layer 0's value projection
        with torch.no_grad():
            site.composition.bank.up_weight.normal_()
        state = site.composition.adapter_state()
        x = torch.randn(2, 5, 32)
        expected = site.base_layer(x) + 3.0 * x @ state["lora_A"].T @ state["lora_B"].T
        torch.testing.assert_close(site(x), expected)
    finally:
        model.detach()


def test_a_target_that_is_no_linear_module_is_a_backbone_error_and_leaves_the_backbone_as_loaded(tiny_backbone):
    backbone = tiny_backbone()
    backbone.layers()[1].attention.self.value = nn.Identity()
    with pytest.raises(BackboneError, match="LoRA target 'value' of layer 1 is a Identity"):
        AdapterModel(backbone, placement_of(LORA))
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


# -- compositions over LoRA sources ----------------------------------------------------------------
def site_delta(composition, bank, x):
    composition.eval()
    view = SiteView(x, x @ torch.randn(IN, OUT), lambda delta: x)
    with torch.no_grad():
        return composition.site_delta(view, ForwardContext())


@pytest.mark.parametrize("method", ["scalearn", "scalearn_uniform", "scalearn_plus_plus", "scalearn_uniform_plus_plus"])
def test_scalearn_scales_each_sources_update(method):
    banks = [random_lora_bank(2, seed=3), random_lora_bank(2, seed=4)]
    compositions = get_method(method).compositions(banks, LORA)
    x = torch.randn(2, 3, IN)
    for bank, composition in zip(banks, compositions):
        with torch.no_grad():
            composition.omega.normal_()
        expected = (composition.omega[:, None, None, :] * source_deltas(bank, x).movedim(-2, 0)).sum(0)
        torch.testing.assert_close(site_delta(composition, bank, x), expected)


def test_plus_plus_scalearn_over_sites_of_different_widths_is_a_config_error():
    banks = [random_lora_bank(2), random_lora_bank(2, out_features=OUT + 2)]
    with pytest.raises(ConfigError, match="one output width"):
        get_method("scalearn_plus_plus").compositions(banks, LORA)
    assert get_method("scalearn_uniform_plus_plus").compositions(banks, LORA)  # ω of width 1 fits every site


def test_average_and_soup_are_the_mean_update_and_the_soup_is_one_lora_of_the_exact_delta_w():
    bank, x = random_lora_bank(3, seed=5), torch.randn(2, 3, IN)
    deltas = source_deltas(bank, x)
    [average] = get_method("average").compositions([bank], LORA)
    torch.testing.assert_close(site_delta(average, bank, x), deltas.mean(-2))
    [soup] = get_method("adaptersoup").compositions([bank], LORA, {"weights": [3.0, 0.0, 1.0]})
    assert isinstance(soup, AdapterSoup) and soup.bank.rank == 2 * LORA.lora_rank  # the zero-weight source left out
    delta_w = sum(w * 3.0 * bank.adapter_state(j)["lora_B"] @ bank.adapter_state(j)["lora_A"]
                  for j, w in enumerate([0.75, 0.0, 0.25]))
    torch.testing.assert_close(site_delta(soup, bank, x), x @ delta_w.T)


def test_fusion_attends_over_the_sources_updates_at_a_site_of_other_widths():
    bank, x = random_lora_bank(3, seed=6), torch.randn(2, 3, IN)
    [fusion] = get_method("adapterfusion").compositions([bank], LORA)
    assert fusion.query.weight.shape == (OUT, IN)
    with torch.no_grad():
        fusion.value.weight.normal_()
    up = source_deltas(bank, x)
    q = fusion.query(x)
    scores = torch.einsum("bto,btko->btk", q, fusion.key(up))
    expected = torch.einsum("btk,btko->bto", torch.softmax(scores, -1), fusion.value(up))
    torch.testing.assert_close(site_delta(fusion, bank, x), expected)


def test_pemt_mixes_lora_experts_and_adds_a_lora_target_adapter():
    bank, x = random_lora_bank(3, seed=7), torch.randn(2, 3, IN)
    [pemt] = get_method("pemt").compositions([bank], LORA)
    assert pemt.gate.shape == (IN, 3) and isinstance(pemt.target_adapter, LoraBank)
    with torch.no_grad():
        pemt.gate.normal_()
        pemt.target_adapter.up_weight.normal_()
    gate = torch.softmax(x.mean(1) @ pemt.gate, -1)
    expected = torch.einsum("bk,btko->bto", gate, source_deltas(bank, x)) + source_deltas(pemt.target_adapter, x)[..., 0, :]
    torch.testing.assert_close(site_delta(pemt, bank, x), expected)


def test_hyperformer_and_parameter_counts_refuse_lora(tiny_backbone):
    with pytest.raises(ConfigError, match="hyperformer_plus_plus generates bottleneck adapters"):
        build_multitask_model(tiny_backbone(), [get_task("sst2")], "hyperformer_plus_plus", LORA)
    with pytest.raises(ConfigError, match="bottleneck sources, not lora"):
        transfer_parameter_count("scalearn", 32, 2, 2, LORA)


# -- end to end on a tiny BERT -------------------------------------------------------------------
FAST = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, learning_rate=1e-2, max_steps_per_epoch=2,
                   precision="fp32")
SOURCES = ("sst2", "cola")


@pytest.fixture(scope="module")
def lora_sources(backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_sources")
    for seed, name in enumerate(SOURCES):
        train_adapter(backbone, get_task(name), sentiment_splits(16, 8, seed=seed + 1), LORA, FAST, root / name,
                      with_prompt=True)
    return [root / name for name in SOURCES]


def test_a_trained_lora_reevaluates_to_its_metrics_and_computes_its_merged_weights(backbone, lora_sources):
    config = json.loads((lora_sources[0] / CONFIG_FILE).read_text())
    assert config["adapter"] == LORA.to_dict()
    assert evaluate_adapter(lora_sources[0], backbone, get_task("sst2"), sentiment_splits(16, 8, seed=1)) \
        == {k: v for k, v in config["metrics"].items() if k.startswith(("validation_", "test_"))}
    merged = copy.deepcopy(backbone.model)  # W + s·B·A written into the wrapped linear modules
    fitted = load_fitted_model(lora_sources[0], backbone)
    try:
        for site in fitted.model.sites:
            state = site.composition.adapter_state()
            assert state["lora_B"].abs().sum() > 0  # it trained
            linear = merged.get_submodule(f"encoder.layer.{site.layer}.{getattr(backbone.layout, site.position)}")
            with torch.no_grad():
                linear.weight += 3.0 * state["lora_B"] @ state["lora_A"]
        batch = tiny_batch(backbone)
        with torch.no_grad():
            torch.testing.assert_close(backbone.model(**batch).last_hidden_state, merged(**batch).last_hidden_state)
        examples = sentiment_examples(6, seed=9)
        logits = predict_logits(fitted, examples)
    finally:
        fitted.close()
    again = load_fitted_model(lora_sources[0], backbone)
    try:
        assert torch.equal(predict_logits(again, examples), logits)
    finally:
        again.close()


@pytest.mark.parametrize("method", list(TRANSFER_METHODS))
def test_every_transfer_method_fits_over_lora_sources_and_reloads_identically(method, backbone, lora_sources, tmp_path):
    options = {"select": "all"} if method == "adaptersoup" else None
    result = fit_transfer(backbone, get_task("demo_sentiment"), sentiment_splits(16, 8), method, lora_sources, FAST,
                          tmp_path / "fit", method_options=options)
    assert result.extra["weights"]["sites"] == ["0.query", "0.value", "1.query", "1.value"]
    examples = sentiment_examples(6, seed=9)
    logits = []
    for _ in range(2):
        fitted = load_fitted_model(tmp_path / "fit", backbone)
        try:
            logits.append(predict_logits(fitted, examples))
        finally:
            fitted.close()
    assert torch.equal(*logits) and torch.isfinite(logits[0]).all()


def test_sources_of_different_kinds_do_not_stack(backbone, lora_sources, tmp_path):
    bottleneck = tmp_path / "bottleneck"
    train_adapter(backbone, get_task("sst2"), sentiment_splits(8, 8), AdapterConfig(reduction_factor=4), FAST,
                  bottleneck)
    with pytest.raises(ArtifactError, match="adapter kind 'bottleneck' but source 'sst2' has 'lora'"):
        fit_transfer(backbone, get_task("demo_sentiment"), sentiment_splits(8, 8), "average",
                     [lora_sources[0], bottleneck], FAST, tmp_path / "fit")
