"""How many parameters a transfer method trains, counted from its compositions (B2/B3's figures).

Off the compute path: sizing only, no unit runs it.
"""

from __future__ import annotations

import torch

from .adapters import AdapterBank
from .compositions import get_method
from .configs import AdapterConfig
from .errors import ConfigError
from .sites import PLACEMENTS


def transfer_parameter_count(method: str, hidden_size: int, num_layers: int, num_sources: int,
                             adapter_cfg: AdapterConfig, *, method_options: dict | None = None,
                             prompt_length: int = 0, backbone_layernorm_params: int = 0) -> int:
    """Trainable transfer parameters (head excluded), counted from the compositions themselves.

    The compositions are built on the meta device, so no memory is used and the count is
    whatever the code trains. PEMT adds its target prompt: `prompt_length × hidden_size`, and
    (`train_layernorms`, its default) the backbone's LayerNorms: `backbone_layernorm_params`, which
    the caller counts for its backbone (`peft_core.layernorms.layernorm_parameter_count`).
    """
    if adapter_cfg.kind != "bottleneck":
        raise ConfigError(f"transfer_parameter_count counts bottleneck sources, not {adapter_cfg.kind}; count a built "
                          "model's trainable parameters instead (AdapterModel.count_parameters)")
    transfer_method = get_method(method)
    num_sites = num_layers * len(PLACEMENTS[adapter_cfg.placement])
    with torch.device("meta"):
        banks = [AdapterBank(num_sources, hidden_size, adapter_cfg).requires_grad_(False) for _ in range(num_sites)]
        compositions = transfer_method.compositions(banks, adapter_cfg, method_options)
    unique = {id(p): p for c in compositions for p in c.parameters() if p.requires_grad}
    prompt = prompt_length * hidden_size if transfer_method.uses_prompts else 0
    layernorms = backbone_layernorm_params if any(c.trains_backbone_layernorms for c in compositions) else 0
    return sum(p.numel() for p in unique.values()) + prompt + layernorms
