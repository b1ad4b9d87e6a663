"""Adapter sites on every backbone family and both placements: pass-through, zero adapters,
detach, double attach, and the pfeiffer / houlsby formulas computed by hand."""

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from peft_core.compositions import SingleAdapter
from peft_core.configs import AdapterConfig
from peft_core.model import AdapterModel
from peft_core.sites import AdapterSite, PostNormSite, ResidualSite

from .conftest import HIDDEN, tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread")

PLACEMENTS = ("pfeiffer", "houlsby")
ADAPTER = AdapterConfig(reduction_factor=4, init_std=0.5)  # bottleneck 8; large weights so adapters matter
# The module whose input is x, the FFN block's input, per family (for the hand-computed pfeiffer formula).
FFN_INPUT = {"bert": "intermediate", "roberta": "intermediate", "deberta-v2": "intermediate",
             "electra": "intermediate", "distilbert": "ffn"}


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
    """`W_up · relu(W_down · z + b_down) + b_up`, from the bank's raw tensors."""
    bank = adapter.bank
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
    """Layer 0: `LN(f + A(LN(f + x)) + x)` with x the FFN input and f the FFN output."""
    backbone = tiny_backbone(family)
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
