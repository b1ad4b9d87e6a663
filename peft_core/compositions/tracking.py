"""Running means of per-source weights that a composition computes on the fly (fusion attention,
PEMT gates), so the report can say how much each source was used over an evaluation pass."""

from __future__ import annotations

import torch

from ..sites import Composition


class TrackedComposition(Composition):
    """A composition whose report averages the weights seen in eval-mode forwards since the last
    `reset_statistics()` (training forwards are not tracked, so they cost nothing extra)."""

    def __init__(self, num_sources: int):
        super().__init__()
        self.num_sources = num_sources
        self.reset_statistics()

    def reset_statistics(self) -> None:
        self._weight_sum = torch.zeros(self.num_sources, dtype=torch.float64, device="cpu")
        self._count = 0.0

    def track(self, weights: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add weights (..., K); `mask` (same leading shape) leaves padding out of the mean."""
        if self.training:
            return
        weights = weights.detach().to(torch.float64).cpu().reshape(-1, self.num_sources)
        if mask is None:
            self._weight_sum += weights.sum(0)
            self._count += weights.shape[0]
        else:
            keep = mask.detach().to(torch.float64).cpu().reshape(-1, 1)
            self._weight_sum += (weights * keep).sum(0)
            self._count += float(keep.sum())

    def mean_weights(self) -> list[float] | None:
        """The tracked mean per source, or None when no eval-mode forward has run since the reset."""
        if not self._count:
            return None
        return (self._weight_sum / self._count).tolist()
