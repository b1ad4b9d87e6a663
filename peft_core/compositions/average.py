"""The uniform-average baseline (METHODS §3): `delta = (1/K) Σ_j A_j(z)`, nothing trains but the head.

Over LoRA sources this is exactly the update of the mean ΔW, `(1/K) Σ_j s B_j A_j x` (a LoRA is
linear in its input), which is also what a uniform AdapterSoup over them computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..adapters import StackedAdapters
from ..configs import AdapterConfig
from ..sites import Composition, ForwardContext


class UniformAverage(Composition):
    def __init__(self, bank: StackedAdapters):
        super().__init__()
        self.bank = bank
        k = bank.num_adapters
        self.register_buffer("coefficients", torch.full((k, 1), 1.0 / k), persistent=False)

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        return self.bank.mix(z, self.coefficients.to(z.dtype))

    def report(self) -> dict:
        return {"weights": self.coefficients[:, 0].tolist()}


def build_average(banks: Sequence[StackedAdapters], adapter: AdapterConfig) -> list[UniformAverage]:
    return [UniformAverage(bank) for bank in banks]
