"""LoRA (Hu et al. 2021) as K adapters of one linear module, stacked like `AdapterBank`.

A LoRA site wraps a backbone linear module W (out × in) and adds, for adapter j,
`A_j(x) = s · B_j A_j dropout(x)` with `A_j` (r, in), `B_j` (out, r) and `s = lora_alpha / r`,
initialised as PEFT does: A_j kaiming-uniform (nn.Linear's own init), B_j zero, so training
starts at W. The K A_j are one (in, K·r) matrix, a single GEMM for every source; the B_jᵀ are the
(K, r, out) up-projections that `StackedAdapters.mix` folds per-source coefficients into.
An adapter's state uses PEFT's names and shapes: `lora_A` (r, in), `lora_B` (out, r).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from .adapters import StackedAdapters
from .configs import AdapterConfig


class LoraBank(StackedAdapters):
    def __init__(self, num_adapters: int, in_features: int, out_features: int, config: AdapterConfig):
        super().__init__(num_adapters, in_features, out_features)
        self.rank = config.lora_rank
        self.scale = config.lora_scale
        down = torch.empty(num_adapters * self.rank, in_features)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5))  # per row, as PEFT inits each lora_A
        self.down_weight = nn.Parameter(down.T.contiguous())
        self.up_weight = nn.Parameter(torch.zeros(num_adapters, self.rank, out_features))
        self.up_bias = None
        self.dropout = nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()  # as PEFT

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """`s · A_j dropout(x)` of every adapter: (..., K, r)."""
        h = (self.dropout(z) @ self.down_weight) * self.scale
        return h.unflatten(-1, (self.num_adapters, self.rank))

    def adapter_state(self, j: int) -> dict[str, torch.Tensor]:
        r = self.rank
        return {"lora_A": self.down_weight[:, j * r : (j + 1) * r].T.detach().clone(),
                "lora_B": self.up_weight[j].T.detach().clone()}

    @torch.no_grad()
    def load_adapter_state(self, j: int, state: dict[str, torch.Tensor]) -> None:
        r = self.rank
        self.down_weight[:, j * r : (j + 1) * r].copy_(state["lora_A"].T)
        self.up_weight[j].copy_(state["lora_B"].T)

    @torch.no_grad()
    def averaged(self, weights: Sequence[float], config: AdapterConfig) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
        """The exact weighted average of the updates, `ΔW = s Σ_j w_j B_j A_j`, as one LoRA of rank
        (sources with a weight) · r (`concatenated`, PEFT's "cat").

        Not A and B averaged apart: two LoRAs trained apart do not share a basis (B A = (B M)(M⁻¹ A)
        for any invertible M), so `(Σ w_j B_j)(Σ w_j A_j)` adds cross terms B_i A_j that neither
        source learned. Averaging ΔW is averaging the adapted weights W + ΔW_j themselves, the soup
        of the models; and since a LoRA is linear in its input, it equals averaging the outputs.
        """
        kept = sum(1 for w in weights if w)
        merged = replace(config, lora_rank=kept * self.rank, lora_alpha=config.lora_alpha * kept)
        return merged, self.concatenated(torch.tensor(weights, dtype=self.up_weight.dtype)[:, None])

    @torch.no_grad()
    def concatenated(self, coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
        """`Σ_j c_j ⊙ s B_j A_j x`, what `mix(x, coefficients)` computes, as one LoRA state at this bank's
        scale: the A_j of the sources with a nonzero coefficient stacked, each c_j ((out,) or (1,)) scaling
        the rows of its B_j. Its rank is (those sources) · r; its alpha, to keep the scale, alpha times as many."""
        kept = [j for j in range(self.num_adapters) if coefficients[j].any()]
        states = [self.adapter_state(j) for j in kept]
        return {"lora_A": torch.cat([s["lora_A"] for s in states]),
                "lora_B": torch.cat([coefficients[j][:, None] * s["lora_B"] for j, s in zip(kept, states)], dim=1)}
