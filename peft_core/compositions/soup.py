"""AdapterSoup (Chronopoulou et al. 2023): the sources' parameters averaged into one adapter per site.

`θ = Σ_j w_j θ_j` with `Σ_j w_j = 1` (uniform by default), then `delta = A_θ(z)`: weight-space
averaging, where `average` averages the adapters' outputs. Nothing trains but the head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..adapters import AdapterBank
from ..configs import AdapterConfig
from ..errors import ConfigError
from .single import SingleAdapter

WEIGHTS_FIX = "give one weight per source, in the order of the fit's sources, e.g. weights: [0.7, 0.3]"


class AdapterSoup(SingleAdapter):
    """One frozen adapter whose tensors are the `weights`-weighted sum of the bank's K adapters'."""

    def __init__(self, bank: AdapterBank, adapter: AdapterConfig, weights: Sequence[float]):
        super().__init__(bank.hidden_size, adapter)
        states = [bank.adapter_state(j) for j in range(bank.num_adapters)]
        self.load_adapter_state({name: sum(w * state[name] for w, state in zip(weights, states, strict=True))
                                 for name in states[0]})
        self.requires_grad_(False)
        self.weights = list(weights)

    def report(self) -> dict:
        return {"weights": self.weights}


def soup_weights(weights: Sequence[float] | None, num_sources: int) -> list[float]:
    """The user's weights checked and scaled to sum to 1; None: uniform."""
    if weights is None:
        return [1.0 / num_sources] * num_sources
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) \
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise ConfigError(f"adaptersoup option 'weights' must be a list of numbers, not {weights!r}; {WEIGHTS_FIX}")
    if len(weights) != num_sources:
        raise ConfigError(f"adaptersoup option 'weights' has {len(weights)} value(s) but the fit combines "
                          f"{num_sources} source adapters; {WEIGHTS_FIX}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"adaptersoup option 'weights' {list(weights)} must be finite and non-negative with a "
                          f"positive sum (they are scaled to sum to 1); {WEIGHTS_FIX}")
    total = sum(weights)
    return [w / total for w in weights]


def build_adaptersoup(banks: Sequence[AdapterBank], adapter: AdapterConfig, *,
                      weights: Sequence[float] | None = None) -> list[AdapterSoup]:
    """One averaged adapter per site; `weights` (one per source, in source order) default to uniform."""
    scaled = soup_weights(weights, banks[0].num_adapters)
    return [AdapterSoup(bank, adapter, scaled) for bank in banks]
