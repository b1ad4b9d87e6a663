"""Compositions against hand-computed references on small tensors and a tiny random BERT."""

import pytest
import torch
import torch.nn.functional as F

from peft_core.adapters import AdapterBank
from peft_core.compositions import (
    TRANSFER_METHODS, AdapterFusion, AttentivePrompt, PEMTMixture, ScaLearn, UniformAverage, get_method,
)
from peft_core.compositions.pemt import task_sparsity_loss
from peft_core.configs import AdapterConfig
from peft_core.errors import ConfigError
from peft_core.model import AdapterModel
from peft_core.sites import ForwardContext, SiteView
from peft_core.parameter_counts import transfer_parameter_count

from tests.helpers.core import HIDDEN as D
from tests.helpers.transfer import ADAPTER, SPEC, model_logits, random_bank, single_adapter_from, unlabelled_batch

pytestmark = pytest.mark.usefixtures("one_thread")

# AdapterBank.mix against the explicit loop over `outputs` is tested in test_adapters.py.

# -- ScaLearn ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["scalearn", "scalearn_uniform", "scalearn_plus_plus", "scalearn_uniform_plus_plus"])
def test_scalearn_with_unit_omega_equals_that_adapter_alone(method, tiny_backbone):
    backbone, k, j = tiny_backbone(), 3, 1
    banks = {i: random_bank(k, seed=10 + i) for i in range(2)}
    compositions = dict(zip(banks, get_method(method).compositions(list(banks.values()), ADAPTER)))
    with torch.no_grad():
        for c in compositions.values():
            c.omega.zero_()
            c.omega[j] = 1.0
    scaled, head = model_logits(backbone, lambda site: compositions[site.layer])
    alone, _ = model_logits(backbone, lambda site: single_adapter_from(banks[site.layer], j), head)
    torch.testing.assert_close(scaled, alone)


def test_omega_starts_at_two_over_k_with_std_one_thousandth():
    from peft_core.compositions.scalearn import init_omega

    torch.manual_seed(0)
    omega = init_omega(8, 4096).detach()
    assert omega.shape == (8, 4096)
    assert omega.mean().item() == pytest.approx(2 / 8, abs=1e-4)
    assert omega.std().item() == pytest.approx(0.001, rel=0.05)


def test_scalearn_output_is_the_scaled_sum_and_omega_dropout_only_trains():
    bank = random_bank(3)
    omega = torch.nn.Parameter(torch.randn(3, D))
    scalearn = ScaLearn(bank, omega, omega_dropout=0.3).eval()
    z = torch.randn(2, 4, D)
    expected = torch.einsum("kd,btkd->btd", omega, bank.outputs(z))
    torch.testing.assert_close(scalearn(z, ForwardContext()), expected)
    scalearn.train()
    torch.manual_seed(0)
    assert not torch.allclose(scalearn(z, ForwardContext()), expected)


def test_scalearn_init_and_published_settings():
    banks = [random_bank(8, seed=s) for s in range(2)]
    for name, width, dropout in [("scalearn", D, 0.3), ("scalearn_uniform", 1, 0.3),
                                 ("scalearn_plus_plus", D, 0.3), ("scalearn_uniform_plus_plus", 1, 0.0)]:
        compositions = get_method(name).compositions(banks, ADAPTER)
        omega = compositions[0].omega
        assert omega.shape == (8, width)
        assert compositions[0].omega_dropout.p == dropout
        assert get_method(name).learning_rate == 6e-3
        assert (omega - 2 / 8).abs().max() < 0.006  # N(2/K, 0.001²)
    big = get_method("scalearn").compositions([AdapterBank(4, 768, AdapterConfig())], AdapterConfig())[0].omega
    assert big.mean().item() == pytest.approx(0.5, abs=1e-4) and big.std().item() == pytest.approx(0.001, rel=0.1)


@pytest.mark.parametrize("method, shared", [("scalearn", False), ("scalearn_uniform", False),
                                            ("scalearn_plus_plus", True), ("scalearn_uniform_plus_plus", True)])
def test_plus_plus_variants_share_one_parameter(method, shared):
    compositions = get_method(method).compositions([random_bank(2, seed=s) for s in range(3)], ADAPTER)
    assert (len({id(c.omega) for c in compositions}) == 1) == shared


def test_scalearn_report_gives_mean_and_vector_per_source():
    omega = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3).repeat_interleave(D // 3 + 1, 1)[:, :D])
    report = ScaLearn(random_bank(2), omega, 0.3).report()
    assert report["weights"] == pytest.approx(omega.detach().mean(1).tolist())
    assert len(report["omega"]) == 2 and len(report["omega"][0]) == D
    assert "omega" not in ScaLearn(random_bank(2), torch.nn.Parameter(torch.ones(2, 1)), 0.3).report()


# -- average -----------------------------------------------------------------------------------
def test_average_of_identical_adapters_equals_one_adapter(tiny_backbone):
    backbone, k = tiny_backbone(), 4
    single_banks = {i: random_bank(1, seed=20 + i) for i in range(2)}
    stacked = {i: AdapterBank(k, D, ADAPTER).requires_grad_(False) for i in range(2)}
    for i, bank in stacked.items():
        for j in range(k):
            bank.load_adapter_state(j, single_banks[i].adapter_state(0))
    averaged, head = model_logits(backbone, lambda site: UniformAverage(stacked[site.layer]))
    alone, _ = model_logits(backbone, lambda site: single_adapter_from(single_banks[site.layer], 0), head)
    torch.testing.assert_close(averaged, alone)
    assert UniformAverage(stacked[0]).report()["weights"] == [0.25] * 4
    assert not any(p.requires_grad for p in UniformAverage(stacked[0]).parameters())


# -- AdapterFusion -----------------------------------------------------------------------------
def test_fusion_of_one_source_with_identity_values_is_that_adapter(tiny_backbone):
    backbone = tiny_backbone()
    banks = {i: random_bank(1, seed=30 + i) for i in range(2)}
    fused, head = model_logits(backbone, lambda site: AdapterFusion(banks[site.layer]))
    alone, _ = model_logits(backbone, lambda site: single_adapter_from(banks[site.layer], 0), head)
    torch.testing.assert_close(fused, alone)


def test_fusion_matches_per_source_attention_by_hand():
    bank = random_bank(3)
    fusion = AdapterFusion(bank).eval()
    with torch.no_grad():
        for p in fusion.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    z = torch.randn(2, 4, D)
    up = bank.outputs(z)
    q = z @ fusion.query.weight.T + fusion.query.bias
    keys = [up[..., j, :] @ fusion.key.weight.T + fusion.key.bias for j in range(3)]
    values = [up[..., j, :] @ fusion.value.weight.T for j in range(3)]
    attention = torch.softmax(torch.stack([(q * kj).sum(-1) for kj in keys], -1), -1)
    expected = sum(attention[..., j, None] * values[j] for j in range(3))
    context = ForwardContext(attention_mask=torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    torch.testing.assert_close(fusion(z, context), expected)
    kept = attention[torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()]
    assert fusion.report()["weights"] == pytest.approx(kept.mean(0).tolist())
    expected_regularizer = 0.01 * (torch.eye(D) - fusion.value.weight).pow(2).sum()
    torch.testing.assert_close(context.auxiliary_losses[0], expected_regularizer)


def test_fusion_init_regularizer_and_settings():
    fusion = AdapterFusion(random_bank(2))
    torch.testing.assert_close(fusion.value.weight, torch.eye(D))
    assert fusion.value.bias is None and not fusion.query.bias.any() and not fusion.key.bias.any()
    assert get_method("adapterfusion").learning_rate == 5e-5
    assert fusion.value_regularizer().item() == 0.0
    assert fusion.report()["weights"] is None  # nothing evaluated yet


def test_fusion_regularizer_is_summed_over_sites_in_the_loss(tiny_backbone):
    backbone = tiny_backbone()
    compositions = get_method("adapterfusion").compositions([random_bank(2, seed=s) for s in range(2)], ADAPTER)
    with torch.no_grad():
        for c in compositions:
            c.value.weight.add_(0.1)
    model = AdapterModel(backbone)
    try:
        model.set_compositions(lambda site: compositions[site.layer])
        model.add_head(SPEC)
        model.eval()
        batch = unlabelled_batch() | {"labels": torch.tensor([0, 1, 1])}
        out = model(batch, SPEC.name)
        ce = F.cross_entropy(out.logits, batch["labels"])
        expected = ce + sum(0.01 * (torch.eye(D) - c.value.weight).pow(2).sum() for c in compositions)
        torch.testing.assert_close(out.loss, expected)
    finally:
        model.detach()


# -- PEMT --------------------------------------------------------------------------------------
def test_pemt_gate_is_uniform_at_init():
    mixture = PEMTMixture(random_bank(4), ADAPTER, sparsity_weight=0.1, num_sites=2)
    z = torch.randn(3, 6, D)
    gate = mixture.gate_weights(z, ForwardContext(prompt_length=2))
    torch.testing.assert_close(gate, torch.full((3, 4), 0.25))


def hand_tsl(y, experts, gate, mask):
    """`Σ_j ḡ_j (1 − mean over the batch's real tokens of cos(y, e_j))`, one token at a time."""
    batch, length, k = experts.shape[:3]
    tsl = 0.0
    for j in range(k):
        cosines = [F.cosine_similarity(y[b, t], experts[b, t, j], dim=0)
                   for b in range(batch) for t in range(length) if mask[b, t]]
        tsl = tsl + gate[:, j].mean() * (1 - torch.stack(cosines).mean())
    return tsl


def test_task_sparsity_loss_by_hand():
    torch.manual_seed(0)
    y, experts = torch.randn(2, 5, D), torch.randn(2, 5, 3, D)
    gate = torch.softmax(torch.randn(2, 3), -1)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    torch.testing.assert_close(task_sparsity_loss(y, experts, gate, mask), hand_tsl(y, experts, gate, mask))
    assert not torch.allclose(task_sparsity_loss(y, experts, gate, mask), task_sparsity_loss(y, experts, gate))


def pemt_site(seed=0):
    """A pfeiffer-like SiteView by hand: s = f + x, z = LN(s), the adapter input after delta LN(s + delta)."""
    g = torch.Generator().manual_seed(seed)
    f, x = torch.randn(2, 5, D, generator=g), torch.randn(2, 5, D, generator=g)
    ln = lambda t: F.layer_norm(t, (D,))  # noqa: E731
    return SiteView(ln(f + x), f, lambda delta: ln(f + x + delta)), f, ln, f + x


@pytest.mark.parametrize("target_adapter", ["sequential", "parallel"])
def test_pemt_output_gate_and_sparsity_loss_on_y_by_hand(target_adapter):
    bank = random_bank(3)
    mixture = PEMTMixture(bank, ADAPTER, sparsity_weight=0.1, num_sites=2, target_adapter=target_adapter)
    with torch.no_grad():
        mixture.gate.normal_(0, 1.0)
        mixture.target_adapter.up_bias.normal_(0, 0.3)
    site, f, ln, s = pemt_site()
    z = site.z
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    context = ForwardContext(attention_mask=mask, prompt_length=2)
    gate = torch.softmax(z[:, :2].mean(1) @ mixture.gate, -1)
    experts = bank.outputs(z)
    mix = sum(gate[:, j, None, None] * experts[..., j, :] for j in range(3))
    target = mixture.target_adapter(ln(s + mix) if target_adapter == "sequential" else z)
    delta = mixture.train().site_delta(site, context)
    torch.testing.assert_close(delta, mix + target)

    tsl = hand_tsl(f + mix + target, experts, gate, mask)  # y: the sub-layer's output, mixture and target adapter in
    torch.testing.assert_close(context.auxiliary_losses[0], 0.1 / 2 * tsl)
    assert not torch.allclose(tsl, hand_tsl(z, experts, gate, mask), atol=1e-3)  # not the TSL on the site's input

    mixture.eval().site_delta(site, ForwardContext(attention_mask=mask, prompt_length=2))
    assert mixture.report()["weights"] == pytest.approx(gate.mean(0).tolist())


def test_pemt_placements_differ_and_options_are_checked():
    site = pemt_site()[0]
    deltas = {}
    for placement in ("sequential", "parallel"):
        torch.manual_seed(3)
        mixture = PEMTMixture(random_bank(2), ADAPTER, 0.1, 1, placement).eval()
        deltas[placement] = mixture.site_delta(site, ForwardContext())
    assert not torch.allclose(deltas["sequential"], deltas["parallel"])
    with pytest.raises(ConfigError, match="target_adapter.*sequential, parallel"):
        get_method("pemt").compositions([random_bank(2)], ADAPTER, {"target_adapter": "after"})
    with pytest.raises(ConfigError, match="train_layernorms"):
        get_method("pemt").compositions([random_bank(2)], ADAPTER, {"train_layernorms": "yes"})
    built = {flag: get_method("pemt").compositions([random_bank(2)], ADAPTER, {"train_layernorms": flag})[0]
             for flag in (True, False)}
    assert built[True].trains_backbone_layernorms and not built[False].trains_backbone_layernorms
    assert PEMTMixture(random_bank(2), ADAPTER, 0.1, 1).sequential  # the released code's placement by default
    assert PEMTMixture(random_bank(2), ADAPTER, 0.1, 1).trains_backbone_layernorms


def test_pemt_sparsity_loss_is_not_added_in_eval_or_with_zero_weight():
    site, context = pemt_site()[0], ForwardContext(prompt_length=1)
    PEMTMixture(random_bank(2), ADAPTER, 0.1, 1).eval().site_delta(site, context)
    PEMTMixture(random_bank(2), ADAPTER, 0.0, 1).train().site_delta(site, context)
    assert context.auxiliary_losses == []


def test_attentive_prompt_by_hand_with_sources_of_different_lengths():
    torch.manual_seed(0)
    target = torch.randn(3, D) * 0.3
    sources = [torch.randn(2, D) * 0.3, torch.randn(5, D) * 0.3]
    prompt = AttentivePrompt(target, sources)
    expected = target + sum(torch.softmax(target @ p.T, dim=-1) @ p for p in sources)
    torch.testing.assert_close(prompt.combined(), expected)
    assert prompt(4).shape == (4, 3, D)
    assert [n for n, p in prompt.named_parameters() if p.requires_grad] == ["embeddings"]
    assert list(prompt.state_dict()) == ["embeddings"]


# -- registry and parameter counts -------------------------------------------------------------
def test_registry_names_and_errors():
    # a new method joins by its registry entry alone; these must stay
    assert set(TRANSFER_METHODS) >= {"average", "adapterfusion", "scalearn", "scalearn_uniform", "scalearn_plus_plus",
                                     "scalearn_uniform_plus_plus", "pemt"}
    assert all(method.name == name for name, method in TRANSFER_METHODS.items())
    with pytest.raises(ConfigError, match="unknown transfer method 'scalern'.*scalearn_plus_plus"):
        get_method("scalern")
    with pytest.raises(ConfigError, match="no option.*omega_dropout"):
        get_method("scalearn").compositions([random_bank(2)], ADAPTER, {"dropout": 0.1})


@pytest.mark.parametrize("method, expected", [
    ("scalearn", 73_728), ("scalearn_uniform", 96), ("scalearn_plus_plus", 6_144),
    ("scalearn_uniform_plus_plus", 8), ("adapterfusion", 21_252_096), ("average", 0),
    ("pemt", 12 * (768 * 8 + 2 * 768 * 48 + 48 + 768)),
])
def test_published_parameter_counts_on_roberta_base(method, expected):
    assert transfer_parameter_count(method, 768, 12, 8, AdapterConfig()) == expected
    layernorms = (1 + 2 * 12) * 2 * 768  # RoBERTa-base: the embeddings' LayerNorm and two per layer
    counted = transfer_parameter_count(method, 768, 12, 8, AdapterConfig(), backbone_layernorm_params=layernorms)
    assert counted == expected + (layernorms if method == "pemt" else 0)  # PEMT trains them by default


def test_pemt_without_trained_layernorms_counts_none_of_them():
    assert transfer_parameter_count("pemt", 768, 12, 8, AdapterConfig(), method_options={"train_layernorms": False},
                                    backbone_layernorm_params=38_400) == 12 * (768 * 8 + 2 * 768 * 48 + 48 + 768)
