"""Dropout on CPU with cheaper random draws, for the training step.

PyTorch's CPU dropout draws one Bernoulli sample per element (`bernoulli_`, ~6 ns each here). In
a frozen MiniLM's training step, that is ~0.45 s of a 2.0 s fp32 and of a 1.3 s bf16 step, most of
it on the attention probabilities (batch x heads x length x length). Here each 64-bit draw of the
same generator gives four 16-bit uniforms, each compared with round(p * 2**16): the keep mask
costs ~7 ms instead of ~40 ms for those tensors. The output, scaled by 1 / (1 - p), and its
gradient are those of dropout with rate round(p * 2**16) / 2**16 (0.1 -> 0.100006). Draws come
from the default generator, so seeding (`torch.manual_seed`) makes them reproducible as before.

CUDA tensors keep PyTorch's fused dropout, which is already cheap there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

UNIFORM_BITS = 16
_WORDS_PER_DRAW = 4  # int16 words in one int64 draw


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """True with probability 1 - round(p * 2**16) / 2**16, from a quarter as many draws as elements."""
    numel = shape.numel()
    draws = -(-numel // _WORDS_PER_DRAW)
    words = torch.empty(draws, dtype=torch.int64).random_(-2 ** 63, 2 ** 63 - 1).view(torch.int16)[:numel]
    return (words >= -2 ** (UNIFORM_BITS - 1) + round(p * 2 ** UNIFORM_BITS)).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x times `keep` times `scale`, and the gradient likewise; only the bool mask is kept for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """`x` with each element zeroed with probability p (to 1 / 2**16) and the rest scaled by 1 / (1 - p)."""
    return _MaskedScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class FastCpuDropout(TorchFunctionMode):
    """Within this block, `F.dropout` in training mode runs `cpu_dropout`; every other call (and
    p = 0, evaluation, in-place dropout) runs as PyTorch's."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, inplace = _dropout_arguments(*args, **kwargs)
            if training and not inplace and 0.0 < p < 1.0:
                return cpu_dropout(x, p)
        return func(*args, **kwargs)


def training_dropout(device_type: str) -> AbstractContextManager:
    """The block a training step's forward pass runs in: `FastCpuDropout` on CPU, PyTorch's dropout elsewhere."""
    return FastCpuDropout() if device_type == "cpu" else nullcontext()


def _dropout_arguments(input, p=0.5, training=True, inplace=False):
    return input, p, training, inplace
