"""The backbone's own LayerNorms, which HyperFormer trains alongside its hypernetwork.

They are named by their path in the encoder (`embeddings.LayerNorm.weight`, ...; see
`peft_core.layernorms`, which holds what any method that trains them shares) and stored in
HyperFormer's artifacts under `backbone_layernorms.` (a materialised adapter carries them as generic
backbone overrides, `artifacts.BACKBONE_OVERRIDES`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layernorms import LayerNormSnapshot, layernorm_parameter_count, layernorm_parameters

PREFIX = "backbone_layernorms."

__all__ = ["PREFIX", "LayerNormSnapshot", "layernorm_parameter_count", "layernorm_parameters", "layernorm_tensors",
           "load_backbone_layernorms"]


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
