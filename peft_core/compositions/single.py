"""One trainable adapter per site: the no-transfer baseline and every source adapter."""

from __future__ import annotations

import torch
from torch import nn

from ..adapters import AdapterBank
from ..configs import AdapterConfig
from ..sites import Composition, ForwardContext


class SingleAdapter(Composition):
    """`A(z)`, or `LN(A(z))` with `config.layer_norm_after` (a materialised HyperFormer adapter)."""

    def __init__(self, hidden_size: int, config: AdapterConfig):
        super().__init__()
        self.bank = AdapterBank(1, hidden_size, config)
        self.layer_norm = nn.LayerNorm(hidden_size) if config.layer_norm_after else None

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        out = self.bank(z)
        return out if self.layer_norm is None else self.layer_norm(out)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Tensors in the artifact layout: the bank's four, plus `ln_weight`/`ln_bias` if any."""
        state = self.bank.adapter_state(0)
        if self.layer_norm is not None:
            state |= {"ln_weight": self.layer_norm.weight.detach().clone(), "ln_bias": self.layer_norm.bias.detach().clone()}
        return state

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        self.bank.load_adapter_state(0, state)
        if self.layer_norm is not None:
            self.layer_norm.weight.copy_(state["ln_weight"])
            self.layer_norm.bias.copy_(state["ln_bias"])
