"""AdapterBank: `mix` against the explicit sum over `outputs`, per-adapter state round trips,
and a bank of one against a hand-written bottleneck."""

import pytest
import torch
from torch import nn

from peft_core.adapters import AdapterBank
from peft_core.configs import AdapterConfig

pytestmark = pytest.mark.usefixtures("one_thread")

D = 32
K = 3
CONFIG = AdapterConfig(reduction_factor=4)  # bottleneck 8


def random_bank(k=K, seed=0, activation="relu") -> AdapterBank:
    torch.manual_seed(seed)
    bank = AdapterBank(k, D, AdapterConfig(reduction_factor=4, activation=activation))
    with torch.no_grad():
        for p in bank.parameters():  # biases are zero-initialised: randomise everything so they count
            p.normal_(0, 0.3)
    return bank


def explicit_sum(bank: AdapterBank, z: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """`Σ_j c_j ⊙ A_j(z)` as a Python loop over `outputs` (z (B, T, d))."""
    outputs = bank.outputs(z)  # (B, T, K, d)
    total = torch.zeros_like(z)
    for j in range(bank.num_adapters):
        if coefficients.shape[0] == bank.num_adapters and coefficients.shape[1] in (1, D):
            c = coefficients[j]  # (d,) or (1,): shared by all examples and tokens
        else:
            c = coefficients[:, j, None, None]  # (B, 1, 1): one weight per example
        total = total + c * outputs[..., j, :]
    return total


def test_outputs_stack_each_adapter_on_its_own_axis():
    bank = random_bank()
    z = torch.randn(2, 5, D)
    outputs = bank.outputs(z)
    assert outputs.shape == (2, 5, K, D)
    m = bank.bottleneck
    for j in range(K):
        hand = torch.relu(z @ bank.down_weight[:, j * m:(j + 1) * m] + bank.down_bias[j * m:(j + 1) * m])
        torch.testing.assert_close(outputs[..., j, :], hand @ bank.up_weight[j] + bank.up_bias[j])


@pytest.mark.parametrize("width", [D, 1], ids=["K_by_d", "K_by_1"])
def test_mix_with_shared_coefficients_equals_explicit_sum(width):
    bank = random_bank()
    z = torch.randn(2, 5, D)
    coefficients = torch.randn(K, width)
    mixed = bank.mix(z, coefficients)
    assert mixed.shape == z.shape
    torch.testing.assert_close(mixed, explicit_sum(bank, z, coefficients), rtol=1e-5, atol=1e-5)


def test_mix_with_one_hot_coefficients_selects_that_adapter():
    bank = random_bank()
    z = torch.randn(2, 5, D)
    for j in range(K):
        one_hot = torch.zeros(K, 1)
        one_hot[j] = 1.0
        torch.testing.assert_close(bank.mix(z, one_hot), bank.outputs(z)[..., j, :], rtol=1e-5, atol=1e-5)


def test_mix_is_differentiable_in_the_coefficients():
    bank = random_bank()
    z = torch.randn(2, 5, D)
    coefficients = torch.randn(K, D, requires_grad=True)
    bank.mix(z, coefficients).square().sum().backward()
    reference = torch.randn(K, D, requires_grad=True)
    with torch.no_grad():
        reference.copy_(coefficients)
    explicit_sum(bank, z, reference).square().sum().backward()
    torch.testing.assert_close(coefficients.grad, reference.grad, rtol=1e-4, atol=1e-4)


def test_mix_with_per_example_coefficients_equals_explicit_sum_batch_of_one():
    bank = random_bank()
    z = torch.randn(1, 5, D)
    coefficients = torch.randn(1, K)
    torch.testing.assert_close(bank.mix_per_example(z, coefficients), explicit_sum(bank, z, coefficients), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch, tokens", [(2, 5), (5, 5)], ids=["B_ne_T", "B_eq_T"])
def test_mix_with_per_example_coefficients_equals_explicit_sum(batch, tokens):
    bank = random_bank()
    z = torch.randn(batch, tokens, D)
    coefficients = torch.rand(batch, K)
    torch.testing.assert_close(bank.mix_per_example(z, coefficients), explicit_sum(bank, z, coefficients), rtol=1e-5, atol=1e-5)


def test_mix_with_per_example_coefficients_when_batch_size_equals_num_adapters():
    bank = random_bank()
    z = torch.randn(K, 5, D)
    coefficients = torch.rand(K, K)
    expected = (bank.outputs(z) * coefficients[:, None, :, None]).sum(-2)
    torch.testing.assert_close(bank.mix_per_example(z, coefficients), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, K), (K, K), (K, D + 1), (K,)], ids=["B_by_K", "K_by_K", "K_by_wrong", "flat"])
def test_mix_rejects_coefficients_that_are_not_shared(shape):
    """Per-example weights go through `mix_per_example`; `mix` must not guess (B == K was ambiguous)."""
    bank = random_bank()
    with pytest.raises(ValueError, match="coefficients must be"):
        bank.mix(torch.randn(K, 5, D), torch.rand(*shape))


def test_forward_is_sum_of_all_adapters():
    bank = random_bank()
    z = torch.randn(2, 5, D)
    torch.testing.assert_close(bank(z), bank.outputs(z).sum(-2), rtol=1e-5, atol=1e-5)


def test_adapter_state_round_trip_moves_exactly_one_adapter():
    source = random_bank(seed=1)
    target = random_bank(seed=2)
    before = {name: p.detach().clone() for name, p in target.named_parameters()}
    state = source.adapter_state(1)
    m = source.bottleneck
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "down_weight": (D, m), "down_bias": (m,), "up_weight": (m, D), "up_bias": (D,)}
    # the state is a copy: changing a bank afterwards does not change it
    scratch = random_bank(seed=1)
    copied = scratch.adapter_state(1)
    with torch.no_grad():
        for p in scratch.parameters():
            p.zero_()
    assert all(torch.equal(copied[k], state[k]) for k in state)

    target.load_adapter_state(2, state)
    for key, value in target.adapter_state(2).items():
        assert torch.equal(value, state[key]), key
    for j in (0, 1):  # the other adapters are untouched
        for key, value in target.adapter_state(j).items():
            original = AdapterBank.adapter_state(_with_params(before), j)[key]
            assert torch.equal(value, original), (j, key)
    z = torch.randn(2, 4, D)
    torch.testing.assert_close(target.outputs(z)[..., 2, :], source.outputs(z)[..., 1, :])


def _with_params(params: dict[str, torch.Tensor]) -> AdapterBank:
    bank = AdapterBank(K, D, CONFIG)
    with torch.no_grad():
        for name, p in bank.named_parameters():
            p.copy_(params[name])
    return bank


def test_load_adapter_state_copies_the_values_and_the_bank_still_trains():
    bank, source = random_bank(), random_bank(seed=5)
    bank.load_adapter_state(0, source.adapter_state(0))
    assert all(torch.equal(value, source.adapter_state(0)[key]) for key, value in bank.adapter_state(0).items())
    bank(torch.randn(2, 5, D)).sum().backward()
    assert all(p.grad is not None for p in bank.parameters())


@pytest.mark.parametrize("activation, act", [("relu", nn.ReLU()), ("gelu", nn.GELU()), ("tanh", nn.Tanh()),
                                             ("swish", nn.SiLU())])
def test_bank_of_one_equals_hand_written_bottleneck(activation, act):
    bank = random_bank(k=1, seed=3, activation=activation)
    down, up = nn.Linear(D, D // 4), nn.Linear(D // 4, D)
    state = bank.adapter_state(0)
    with torch.no_grad():
        down.weight.copy_(state["down_weight"].T)
        down.bias.copy_(state["down_bias"])
        up.weight.copy_(state["up_weight"].T)
        up.bias.copy_(state["up_bias"])
    z = torch.randn(2, 5, D)
    expected = up(act(down(z)))
    torch.testing.assert_close(bank(z), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bank.outputs(z)[..., 0, :], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bank.mix(z, torch.ones(1, 1)), expected, rtol=1e-5, atol=1e-5)


def test_reduction_factor_must_divide_hidden_size():
    with pytest.raises(ValueError, match="not divisible"):
        AdapterBank(1, 30, AdapterConfig(reduction_factor=16))


def test_fresh_bank_has_zero_biases_and_small_weights():
    torch.manual_seed(0)
    bank = AdapterBank(2, D, AdapterConfig(reduction_factor=4, init_std=0.02))
    assert bank.bottleneck == 8
    assert bank.down_weight.shape == (D, 16) and bank.up_weight.shape == (2, 8, D)
    assert torch.count_nonzero(bank.down_bias) == 0 and torch.count_nonzero(bank.up_bias) == 0
    assert 0.01 < bank.down_weight.std().item() < 0.03
