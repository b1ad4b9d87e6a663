"""Adapter sites on every backbone family and both placements: pass-through, zero adapters,
detach, double attach, the pfeiffer / houlsby formulas computed by hand, what a site shows a
composition (`SiteView`), and PEMT's sequential target adapter and sparsity loss at real sites."""

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from peft_core.compositions import TRANSFER_METHODS, SingleAdapter, get_method
from peft_core.compositions.pemt import masked_token_mean, task_sparsity_loss
from peft_core.configs import AdapterConfig
from peft_core.model import AdapterModel
from peft_core.sites import AdapterSite, PostNormSite, ResidualSite, detach_sites, reattach_sites

from tests.helpers.core import HIDDEN, tiny_batch
from tests.helpers.transfer import random_bank

pytestmark = pytest.mark.usefixtures("one_thread")

PLACEMENTS = ("pfeiffer", "houlsby")
ADAPTER = AdapterConfig(reduction_factor=4, init_std=0.5)  # bottleneck 8; large weights so adapters matter
# The module whose input is x, the FFN block's input, per post-norm family (for the hand-computed pfeiffer formula).
FFN_INPUT = {"bert": "intermediate", "roberta": "intermediate", "deberta-v2": "intermediate",
             "electra": "intermediate", "distilbert": "ffn"}
# Per pre-norm family: the LayerNorm before the FFN (its input is the residual stream h) and the module
# whose output is the FFN sub-layer's `h + drop(y)` ("" the layer itself).
PRE_FFN_NORM = {"t5": ("layer.1.layer_norm", "layer.1"), "llama": ("post_attention_layernorm", ""),
                "qwen2": ("post_attention_layernorm", ""), "gpt2": ("ln_2", "")}


def random_adapter(seed: int, placement: str = "pfeiffer") -> SingleAdapter:
    torch.manual_seed(seed)
    adapter = SingleAdapter(HIDDEN, AdapterConfig(placement=placement, reduction_factor=4, init_std=0.5))
    with torch.no_grad():
        adapter.bank.down_bias.normal_(0, 0.5)
        adapter.bank.up_bias.normal_(0, 0.5)
    return adapter


def zero_adapter(seed: int) -> SingleAdapter:
    """A random down-projection and zero up-projection (weights and bias): A(z) = 0."""
    adapter = random_adapter(seed)
    with torch.no_grad():
        adapter.bank.up_weight.zero_()
        adapter.bank.up_bias.zero_()
    return adapter


def hand_adapter(adapter: SingleAdapter, z: torch.Tensor) -> torch.Tensor:
    return hand_bank(adapter.bank, z)


def hand_bank(bank, z: torch.Tensor) -> torch.Tensor:
    """`W_up · relu(W_down · z + b_down) + b_up`, from a bank of one's raw tensors."""
    return torch.relu(z @ bank.down_weight + bank.down_bias) @ bank.up_weight[0] + bank.up_bias[0]


@torch.no_grad()
def hidden_states(backbone, batch) -> torch.Tensor:
    return backbone.model(**batch).last_hidden_state


def backbone_with_reference(tiny_backbone, family: str):
    """The family's tiny backbone, a batch, and the batch's hidden states before any adapter."""
    backbone = tiny_backbone(family)
    batch = tiny_batch(backbone)
    return backbone, batch, hidden_states(backbone, batch)


@contextmanager
def attached(backbone, placement: str):
    """An AdapterModel on `backbone` for the block, detached afterwards whatever happens."""
    model = AdapterModel(backbone, placement)
    try:
        yield model
    finally:
        model.detach()


@contextmanager
def hooks_removed_after(hooks: list):
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def snapshot(module: torch.nn.Module):
    tree = [(name, type(m), id(m)) for name, m in module.named_modules()]
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return tree, state


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_sites_without_composition_are_exact_pass_through(tiny_backbone, family, placement):
    backbone, batch, reference = backbone_with_reference(tiny_backbone, family)
    with attached(backbone, placement) as model:
        expected_sites = backbone.num_layers * (1 if placement == "pfeiffer" else 2)
        assert len(model.sites) == expected_sites
        assert all(site.composition is None for site in model.sites)
        assert torch.equal(hidden_states(backbone, batch), reference)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_zero_initialised_adapter_leaves_outputs_identical(tiny_backbone, family, placement):
    backbone, batch, reference = backbone_with_reference(tiny_backbone, family)
    with attached(backbone, placement) as model:
        model.set_compositions(lambda site: zero_adapter(seed=site.layer))
        # the down-projection is live: the adapter really runs, its output is just zero
        assert all(site.composition.bank.down_weight.abs().sum() > 0 for site in model.sites)
        assert torch.equal(hidden_states(backbone, batch), reference)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_random_adapter_changes_outputs(tiny_backbone, family, placement):
    backbone, batch, reference = backbone_with_reference(tiny_backbone, family)
    with attached(backbone, placement) as model:
        model.set_compositions(lambda site: random_adapter(seed=10 + site.layer))
        adapted = hidden_states(backbone, batch)
        assert adapted.shape == reference.shape
        assert (adapted - reference).abs().max() > 1e-2


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_detach_restores_module_tree_state_dict_and_outputs(tiny_backbone, family, placement):
    backbone, batch, reference = backbone_with_reference(tiny_backbone, family)
    tree_before, state_before = snapshot(backbone.model)

    model = AdapterModel(backbone, placement)
    model.set_compositions(lambda site: random_adapter(seed=site.layer))
    tree_attached, state_attached = snapshot(backbone.model)
    assert tree_attached != tree_before
    assert set(state_attached) != set(state_before)
    assert not torch.equal(hidden_states(backbone, batch), reference)

    model.detach()
    assert model.sites == []
    tree_after, state_after = snapshot(backbone.model)
    assert tree_after == tree_before  # same names, same types, the very same module objects
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())
    assert list(state_after) == list(state_before)
    for key, value in state_before.items():
        assert torch.equal(state_after[key], value), key
    assert torch.equal(hidden_states(backbone, batch), reference)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_attaching_twice_raises_and_changes_nothing(tiny_backbone, family, placement):
    backbone, batch, reference = backbone_with_reference(tiny_backbone, family)
    tree_before, _ = snapshot(backbone.model)
    first = AdapterModel(backbone, placement)
    tree_attached, _ = snapshot(backbone.model)
    for second_placement in PLACEMENTS:  # another placement wraps other modules, but is refused too
        with pytest.raises(ValueError, match="already has adapter sites"):
            AdapterModel(backbone, second_placement)
    assert snapshot(backbone.model)[0] == tree_attached  # the failed attach wrapped nothing
    first.detach()
    assert snapshot(backbone.model)[0] == tree_before
    assert torch.equal(hidden_states(backbone, batch), reference)


def test_unknown_placement_raises(tiny_backbone):
    backbone = tiny_backbone("bert")
    with pytest.raises(ValueError, match="unknown placement"):
        AdapterModel(backbone, "parallel")
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


def test_pfeiffer_site_equals_hand_formula_on_one_layer(tiny_backbone, family):
    """Layer 0: `LN(f + A(LN(f + x)) + x)` with x the FFN input and f the FFN output (post-norm);
    `h + y + A(y)` with y = FFN(LN(h)) (pre-norm: T5, Llama, GPT-2; dropout off)."""
    backbone = tiny_backbone(family)
    if backbone.layout.norm == "pre":
        return assert_pre_norm_pfeiffer(backbone, family)
    batch = tiny_batch(backbone)
    with attached(backbone, "pfeiffer") as model:
        adapter = random_adapter(seed=3)
        model.set_compositions(lambda site: adapter if site.layer == 0 else None)
        layer = backbone.layers()[0]
        site = layer.get_submodule(backbone.layout.ffn_norm)
        assert isinstance(site, PostNormSite) and site.composition is adapter
        captured = {}
        hooks = [
            layer.get_submodule(FFN_INPUT[family]).register_forward_pre_hook(
                lambda m, args: captured.__setitem__("x", args[0])),
            layer.get_submodule(backbone.layout.ffn_out).register_forward_hook(
                lambda m, args, out: captured.__setitem__("f", out)),
            site.register_forward_hook(lambda m, args, out: captured.__setitem__("out", out)),
        ]
        with hooks_removed_after(hooks):
            hidden_states(backbone, batch)
        x, f = captured["x"], captured["f"]
        norm = site.base_layer
        ln = lambda t: F.layer_norm(t, (HIDDEN,), norm.weight, norm.bias, norm.eps)  # noqa: E731
        with torch.no_grad():
            expected = ln(f + hand_adapter(adapter, ln(f + x)) + x)
            without_adapter = ln(f + x)
        torch.testing.assert_close(captured["out"], expected, rtol=1e-5, atol=1e-5)
        assert (captured["out"] - without_adapter).abs().max() > 1e-2


def assert_pre_norm_pfeiffer(backbone, family):
    batch = tiny_batch(backbone)
    with attached(backbone, "pfeiffer") as model:
        adapter = random_adapter(seed=3)
        model.set_compositions(lambda site: adapter if site.layer == 0 else None)
        layer = backbone.layers()[0]
        site = layer.get_submodule(backbone.layout.ffn_out)
        assert isinstance(site, ResidualSite) and [s.key for s in model.sites] == ["0.ffn", "1.ffn"]
        norm, block = PRE_FFN_NORM[family]
        captured = {}
        hooks = [capture(layer.get_submodule(norm), "h", captured, "input"),
                 capture(site.base_layer, "y", captured),
                 capture(layer.get_submodule(block) if block else layer, "out", captured)]
        with hooks_removed_after(hooks):
            hidden_states(backbone, batch)
        out = captured["out"][0] if isinstance(captured["out"], tuple) else captured["out"]
        h, y = captured["h"], captured["y"]
        with torch.no_grad():
            expected = h + y + hand_adapter(adapter, y)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert (out - (h + y)).abs().max() > 1e-2


def test_houlsby_sites_equal_y_plus_adapter_of_y(tiny_backbone, family):
    backbone = tiny_backbone(family)
    batch = tiny_batch(backbone)
    with attached(backbone, "houlsby") as model:
        adapters = {}

        def make(site):
            adapters[site.key] = random_adapter(seed=20 + len(adapters), placement="houlsby")
            return adapters[site.key]

        model.set_compositions(make)
        assert [s.key for s in model.sites] == [f"{i}.{p}" for i in range(2) for p in ("attn", "ffn")]
        captured, hooks = {}, []
        for site in model.sites:
            assert isinstance(site, ResidualSite)
            hooks.append(site.base_layer.register_forward_hook(
                lambda m, args, out, key=site.key: captured.__setitem__(("y", key), out)))
            hooks.append(site.register_forward_hook(
                lambda m, args, out, key=site.key: captured.__setitem__(("out", key), out)))
        with hooks_removed_after(hooks):
            hidden_states(backbone, batch)
        for key, adapter in adapters.items():
            y = captured[("y", key)]
            with torch.no_grad():
                expected = y + hand_adapter(adapter, y)
            torch.testing.assert_close(captured[("out", key)], expected, rtol=1e-5, atol=1e-5)
            assert (expected - y).abs().max() > 1e-2


# -- what a site shows a composition -----------------------------------------------------------
def random_compositions(method: str, sites) -> dict:
    """`method`'s compositions over random 3-source banks, their trainable tensors moved off their start."""
    torch.manual_seed(1)
    compositions = get_method(method).compositions([random_bank(3, seed=i) for i in range(len(sites))], ADAPTER)
    for composition in compositions:
        with torch.no_grad():
            for param in composition.parameters():
                if param.requires_grad:
                    param.add_(torch.randn_like(param) * 0.3)
    return {site.key: c for site, c in zip(sites, compositions)}


def capture(module, name: str, captured: dict, what: str = "output"):
    """A hook keeping `module`'s first input (`what="input"`) or its output in captured[name]."""
    if what == "input":
        return module.register_forward_pre_hook(lambda m, args: captured.__setitem__(name, args[0]))
    return module.register_forward_hook(lambda m, args, out: captured.__setitem__(name, out))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("method", [m for m in TRANSFER_METHODS if m != "pemt"])
def test_every_other_composition_sees_only_z_bit_for_bit(tiny_backbone, method, placement):
    """The site hands a composition that reads z exactly what it did before sites showed more:
    pfeiffer `LN(s + c(LN(s)))`, houlsby `y + c(y)`, bit for bit."""
    backbone = tiny_backbone("bert")
    batch = tiny_batch(backbone)
    with attached(backbone, placement) as model:
        compositions = random_compositions(method, model.sites)
        model.set_compositions(lambda site: compositions[site.key])
        model.eval()
        captured, hooks = {}, []
        for site in model.sites:
            hooks.append(capture(site, ("in", site.key), captured, "input"))
            hooks.append(capture(site.base_layer, ("base", site.key), captured))
            hooks.append(capture(site, ("out", site.key), captured))
        with hooks_removed_after(hooks):
            hidden_states(backbone, batch)
        with torch.no_grad():
            for site in model.sites:
                composition = compositions[site.key]
                if placement == "pfeiffer":
                    s = captured[("in", site.key)]
                    expected = site.base_layer(s + composition(site.base_layer(s), model.context))
                else:
                    y = captured[("base", site.key)]
                    expected = y + composition(y, model.context)
                assert torch.equal(captured[("out", site.key)], expected), site.key


def test_detached_sites_leave_no_hooks_and_reattached_ones_observe_again(tiny_backbone, family):
    backbone = tiny_backbone(family)
    hooked = lambda: [n for n, m in backbone.model.named_modules() if m._forward_hooks]  # noqa: E731
    model = AdapterModel(backbone, "pfeiffer")
    # each post-norm pfeiffer site observes its FFN's output dropout; a pre-norm one reads its own module's output
    observers = backbone.num_layers if backbone.layout.norm == "post" else 0
    assert len(hooked()) == observers
    sites = model.sites
    detach_sites(backbone)
    assert hooked() == []
    reattach_sites(backbone, "pfeiffer", sites)
    assert len(hooked()) == observers
    model.detach()
    assert hooked() == []


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_pemt_sequential_target_adapter_and_sparsity_loss_at_the_sites(tiny_backbone, family, placement):
    """In training (dropout on), every site by hand: z, the gate over the real tokens, the mixture,
    the target adapter on the adapter input after the mixture, and the TSL on y = sub-layer output +
    delta; pfeiffer `LN(f + x + mix + A_t(LN(f + x + mix)))` with f after dropout, houlsby
    (and pfeiffer on a pre-norm family) `y0 + mix + A_t(y0 + mix)`."""
    backbone = tiny_backbone(family)
    batch = tiny_batch(backbone)
    with attached(backbone, placement) as model:
        compositions = random_compositions("pemt", model.sites)
        assert all(c.sequential for c in compositions.values())
        model.set_compositions(lambda site: compositions[site.key])
        model.train()
        model.context.reset(None, batch["attention_mask"], 0)
        captured, hooks = {}, []
        for site in model.sites:
            layer = backbone.layers()[site.layer]
            hooks.append(capture(site, ("out", site.key), captured))
            hooks.append(capture(site.base_layer, ("base", site.key), captured))
            if isinstance(site, PostNormSite):
                hooks.append(capture(layer.get_submodule(FFN_INPUT[family]), ("x", site.key), captured, "input"))
                hooks.append(capture(layer.get_submodule(backbone.layout.ffn_dropout), ("f", site.key), captured))
        torch.manual_seed(7)
        with hooks_removed_after(hooks):
            hidden_states(backbone, batch)
        mask = batch["attention_mask"]
        assert len(model.context.auxiliary_losses) == len(model.sites)
        with torch.no_grad():
            for site, loss in zip(model.sites, model.context.auxiliary_losses):
                pemt = compositions[site.key]
                if isinstance(site, PostNormSite):
                    f, x = captured[("f", site.key)], captured[("x", site.key)]
                    norm = site.base_layer
                    ln = lambda t: F.layer_norm(t, (HIDDEN,), norm.weight, norm.bias, norm.eps)  # noqa: E731
                    z, after = ln(f + x), lambda mix: ln(f + x + mix)  # noqa: E731
                    output = lambda delta: ln(f + x + delta)  # noqa: E731
                else:
                    f = z = captured[("base", site.key)]
                    after = output = lambda delta: z + delta  # noqa: E731
                gate = torch.softmax(masked_token_mean(z, mask) @ pemt.gate, -1)
                experts = pemt.bank.outputs(z)
                mix = torch.einsum("btkd,bk->btd", experts, gate)
                delta = mix + hand_bank(pemt.target_adapter, after(mix))
                torch.testing.assert_close(captured[("out", site.key)], output(delta), rtol=1e-5, atol=1e-5)
                tsl = task_sparsity_loss(f + delta, experts, gate, mask)
                torch.testing.assert_close(loss, pemt.sparsity_scale * tsl)
                parallel = output(mix + hand_bank(pemt.target_adapter, z))
                assert (captured[("out", site.key)] - parallel).abs().max() > 1e-3
