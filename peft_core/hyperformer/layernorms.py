"""The backbone's own LayerNorms, which HyperFormer trains alongside its hypernetwork.

They are named by their path in the backbone as loaded (`embeddings.LayerNorm.weight`, ...; see
`peft_core.layernorms`, which holds what any method that trains them shares) and stored in
HyperFormer's artifacts as backbone overrides (`backbone.<path>`, `artifact_layout`; few-shot fits
written before it used `backbone_layernorms.<path>`, which still loads).
"""

from __future__ import annotations

import torch

from ..artifact_layout import backbone_override_tensors
from ..backbones import Backbone
from ..layernorms import layernorm_parameter_count, layernorm_parameters

__all__ = ["layernorm_parameter_count", "layernorm_parameters", "layernorm_tensors"]


def layernorm_tensors(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The LayerNorm weights in artifact layout (backbone overrides, `backbone.<path>`)."""
    return backbone_override_tensors(layernorm_parameters(backbone))
