"""One trainable adapter per site: the no-transfer baseline and every source adapter."""

from __future__ import annotations

import torch
from torch import nn

from ..adapter_kinds import adapter_bank
from ..configs import AdapterConfig
from ..sites import AdapterSite, Composition, ForwardContext


class SingleAdapter(Composition):
    """`A(z)`, or `LN(A(z))` with `config.layer_norm_after` (a materialised HyperFormer adapter).

    A is of `config.kind`, reading `in_features` and returning `out_features` (default: the same).
    """

    def __init__(self, in_features: int, config: AdapterConfig, out_features: int | None = None):
        super().__init__()
        self.bank = adapter_bank(1, in_features, out_features or in_features, config)
        self.layer_norm = nn.LayerNorm(self.bank.out_features) if config.layer_norm_after else None

    @classmethod
    def at(cls, site: AdapterSite, config: AdapterConfig) -> SingleAdapter:
        """A fresh adapter for `site`'s widths."""
        return cls(site.in_features, config, site.out_features)

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        out = self.bank(z)
        return out if self.layer_norm is None else self.layer_norm(out)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Tensors in the artifact layout: the bank's, plus `ln_weight`/`ln_bias` if any."""
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
