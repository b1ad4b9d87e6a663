"""The backbone's own LayerNorms, which HyperFormer trains alongside its hypernetwork.

They are named by their path in the encoder (`embeddings.LayerNorm.weight`, ...; see
`peft_core.layernorms`, which holds what any method that trains them shares) and stored in
HyperFormer's artifacts as backbone overrides (`backbone.<path>`, `artifact_layout`; few-shot fits
written before it used `backbone_layernorms.<path>`, which still loads).
"""

from __future__ import annotations

import torch
from torch import nn

from ..artifact_layout import backbone_override_tensors, backbone_overrides
from ..layernorms import LayerNormSnapshot, layernorm_parameter_count, layernorm_parameters

__all__ = ["LayerNormSnapshot", "layernorm_parameter_count", "layernorm_parameters", "layernorm_tensors",
           "load_backbone_layernorms"]


def layernorm_tensors(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The LayerNorm weights in artifact layout (backbone overrides, `backbone.<path>`)."""
    return backbone_override_tensors(layernorm_parameters(encoder))


@torch.no_grad()
def load_backbone_layernorms(encoder: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy the backbone overrides among an artifact's tensors (its LayerNorms) into the encoder, if any.

    The encoder is changed in place (it is the shared backbone); `LayerNormSnapshot` undoes it.
    """
    params = layernorm_parameters(encoder)
    for path, value in backbone_overrides(tensors).items():
        params[path].copy_(value)
