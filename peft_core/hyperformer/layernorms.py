"""The backbone's own LayerNorms, which HyperFormer trains alongside its hypernetwork.

They are named by their path in the encoder (`embeddings.LayerNorm.weight`, ...) and stored in
HyperFormer's artifacts under `backbone_layernorms.` (a materialised adapter carries them as generic
backbone overrides, `artifacts.BACKBONE_OVERRIDES`); LayerNorms inside adapter compositions are not
the backbone's and are left out.
"""

from __future__ import annotations

import torch
from torch import nn

from ..sites import Composition

PREFIX = "backbone_layernorms."


def _is_layernorm(module: nn.Module) -> bool:
    # T5LayerNorm and friends are not nn.LayerNorm subclasses.
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("LayerNorm")


def layernorm_parameters(encoder: nn.Module) -> dict[str, nn.Parameter]:
    adapter_prefixes = tuple(f"{name}." for name, m in encoder.named_modules() if isinstance(m, Composition))
    return {
        f"{name}.{param_name}": param
        for name, module in encoder.named_modules()
        if _is_layernorm(module) and not name.startswith(adapter_prefixes)
        for param_name, param in module.named_parameters(recurse=False)
    }


def layernorm_tensors(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The LayerNorm weights in artifact layout (`backbone_layernorms.<path>`)."""
    return {PREFIX + name: p.detach().clone() for name, p in layernorm_parameters(encoder).items()}


@torch.no_grad()
def load_backbone_layernorms(encoder: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy the `backbone_layernorms.*` entries of an artifact's tensors into the encoder, if any.

    The encoder is changed in place (it is the shared backbone); `LayerNormSnapshot` undoes it.
    """
    params = layernorm_parameters(encoder)
    for key, value in tensors.items():
        if key.startswith(PREFIX):
            params[key[len(PREFIX):]].copy_(value)


class LayerNormSnapshot:
    """The backbone LayerNorms as they were, to put back when a model that trained them detaches."""

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.saved = {name: p.detach().clone() for name, p in layernorm_parameters(encoder).items()}

    @torch.no_grad()
    def restore(self) -> None:
        params = layernorm_parameters(self.encoder)
        for name, value in self.saved.items():
            params[name].copy_(value)
            params[name].requires_grad_(False)


def layernorm_parameter_count(encoder: nn.Module) -> int:
    return sum(p.numel() for p in layernorm_parameters(encoder).values())
