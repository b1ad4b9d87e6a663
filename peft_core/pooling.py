"""One vector per sentence from a backbone's last hidden states, as its family's layout says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch



def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the states of the tokens `mask` keeps (sentence-transformers style)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of each row's last token that `mask` keeps: a causal decoder's only token that has
    read the whole input. Found from the mask, so right and left padding give the same position."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.to(positions.dtype) * positions).argmax(-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@dataclass(frozen=True)
class PoolingRule:
    pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    adjective: str  # for records: "mean-pooled sentence embeddings"
    formula: str  # for files read outside adapterflow (a PEFT export's head note)


POOLINGS: dict[str, PoolingRule] = {
    "mean": PoolingRule(mean_pool, "mean-pooled", "pooled = Σ_t mask_t h_t / Σ_t mask_t"),
    "last": PoolingRule(last_token_pool, "last-token", "pooled = h_T, T the last position t whose mask_t is 1"),
}
