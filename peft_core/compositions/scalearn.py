"""ScaLearn (Frohmann et al. 2023, METHODS §1b): learned scales on frozen source adapters.

`delta = Σ_j ω_j ⊙ A_j(z)`, unconstrained ω (no softmax, no normalisation). The four published
variants differ only in ω's shape and whether one ω serves every layer:

| variant                    | ω shape | shared across layers | ω-dropout |
|----------------------------|---------|----------------------|-----------|
| scalearn                   | (K, d)  | no                   | 0.3       |
| scalearn_uniform           | (K, 1)  | no                   | 0.3       |
| scalearn_plus_plus         | (K, d)  | yes                  | 0.3       |
| scalearn_uniform_plus_plus | (K, 1)  | yes                  | 0.0       |

Over LoRA sources A_j is source j's update at the site, `s · B_j A_j x`, and d the wrapped module's
output width: ω scales each source's update, per output dimension or as a whole. The ++ variants
with a (K, d) ω need every site to have the same output width (LoRA targets that all return the
hidden state, like the default query and value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import method_names
from ..adapters import StackedAdapters
from ..configs import AdapterConfig
from ..errors import ConfigError
from ..sites import Composition, ForwardContext

SCALEARN_LEARNING_RATE = 6e-3
OMEGA_INIT_STD = 0.001


def init_omega(num_sources: int, width: int) -> nn.Parameter:
    """ω ~ N(2/K, 0.001²) of shape (K, width), width d or 1."""
    return nn.Parameter(torch.empty(num_sources, width).normal_(2.0 / num_sources, OMEGA_INIT_STD))


class ScaLearn(Composition):
    """One site's scaled sum of K frozen adapters. `omega` may be shared with other sites (++)."""

    def __init__(self, bank: StackedAdapters, omega: nn.Parameter, omega_dropout: float):
        super().__init__()
        self.bank = bank
        self.omega = omega
        # Dropout on ω itself (as the authors' code does): a whole source's scale, or one of its
        # dimensions, drops out for the step; nn.Dropout rescales the rest by 1/(1-p).
        self.omega_dropout = nn.Dropout(omega_dropout)

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        return self.bank.mix(z, self.omega_dropout(self.omega))

    def report(self) -> dict:
        omega = self.omega.detach().float().cpu()
        report = {"weights": omega.mean(1).tolist()}
        if omega.shape[1] > 1:
            report["omega"] = omega.tolist()
        return report


@dataclass(frozen=True)
class ScaLearnVariant:
    per_dimension: bool  # ω is (K, d) rather than (K, 1)
    shared_across_layers: bool  # the ++ variants: one ω Parameter object in every site
    omega_dropout: float

    def build(self, banks: Sequence[StackedAdapters], adapter: AdapterConfig, *,
              omega_dropout: float | None = None) -> list[ScaLearn]:
        """One ScaLearn per site; `omega_dropout` overrides the variant's published rate."""
        k = banks[0].num_adapters
        widths = [bank.out_features if self.per_dimension else 1 for bank in banks]
        dropout = self.omega_dropout if omega_dropout is None else omega_dropout
        if self.shared_across_layers and len(set(widths)) > 1:
            raise ConfigError(f"a ++ ScaLearn shares one ω of width d across sites, but these sites return widths "
                              f"{sorted(set(widths))}; choose adapter.lora_targets of one output width, or a "
                              "uniform or per-layer variant")
        shared = init_omega(k, widths[0]) if self.shared_across_layers else None
        return [ScaLearn(bank, shared if shared is not None else init_omega(k, width), dropout)
                for bank, width in zip(banks, widths)]


SCALEARN_VARIANTS: dict[str, ScaLearnVariant] = method_names.implemented(
    "ScaLearn variant", method_names.SCALEARN_VARIANTS, {
        "scalearn": ScaLearnVariant(per_dimension=True, shared_across_layers=False, omega_dropout=0.3),
        "scalearn_uniform": ScaLearnVariant(per_dimension=False, shared_across_layers=False, omega_dropout=0.3),
        "scalearn_plus_plus": ScaLearnVariant(per_dimension=True, shared_across_layers=True, omega_dropout=0.3),
        "scalearn_uniform_plus_plus": ScaLearnVariant(per_dimension=False, shared_across_layers=True, omega_dropout=0.0),
    })
