"""The training step's CPU dropout: the rate, the scale and the gradient of dropout, reproducible
from the seed, and in effect exactly where PyTorch's dropout would act."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from peft_core.dropout import FastCpuDropout, cpu_dropout, training_dropout

P = 0.1


def test_zeroes_at_the_rate_and_scales_the_rest():
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 1.0  # no zeros of its own
    y = cpu_dropout(x, P)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - P) < 5 * math.sqrt(P * (1 - P) / x.numel())
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - P))


def test_masks_are_not_repeated_within_or_across_draws():
    torch.manual_seed(0)
    first, second = cpu_dropout(torch.ones(64, 1024), P), cpu_dropout(torch.ones(64, 1024), P)
    assert not torch.equal(first, second)
    assert len({tuple(row.tolist()) for row in first == 0}) == 64  # the 4 words of a draw are not copies


def test_the_gradient_is_the_mask_times_the_scale():
    x = torch.randn(8, 33, requires_grad=True)  # not a multiple of the 4 words per draw
    y = cpu_dropout(x, P)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y != 0).float() / (1 - P))


def test_the_seed_decides_the_mask():
    masks = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        masks.append(cpu_dropout(torch.ones(4096), P) == 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_the_dtype(dtype):
    assert cpu_dropout(torch.ones(10, dtype=dtype), P).dtype == dtype


def test_the_block_replaces_training_dropout_only():
    layer = nn.Sequential(nn.Linear(16, 16), nn.Dropout(P))
    x = torch.randn(256, 16)
    layer.eval()
    with FastCpuDropout():
        torch.testing.assert_close(layer(x), layer[0](x))  # evaluation: no dropout, as PyTorch's
    layer.train()
    torch.manual_seed(0)
    with FastCpuDropout():
        ours = layer(x)
    torch.manual_seed(0)
    expected = cpu_dropout(layer[0](x), P)
    torch.testing.assert_close(ours, expected)
    torch.manual_seed(0)
    assert not torch.equal(layer(x), ours)  # outside the block: PyTorch's own draws
    with FastCpuDropout():
        torch.testing.assert_close(nn.functional.dropout(x, 0.0, training=True), x)


def test_a_backbone_in_training_mode_drops_through_the_block(tiny_backbone):
    """Its hidden-state and attention-probability dropouts (a functional call inside the attention)."""
    model = tiny_backbone().model.train()
    ids = torch.randint(5, 30, (4, 12))

    def hidden(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with FastCpuDropout():
            return model(input_ids=ids).last_hidden_state

    assert torch.equal(hidden(0), hidden(0)) and not torch.equal(hidden(0), hidden(1))
    model.eval()
    torch.testing.assert_close(hidden(0), model(input_ids=ids).last_hidden_state)


def test_only_cpu_training_uses_it():
    assert isinstance(training_dropout("cpu"), FastCpuDropout)
    assert not isinstance(training_dropout("cuda"), FastCpuDropout)
