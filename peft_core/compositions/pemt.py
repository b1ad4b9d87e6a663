"""PEMT (Lin et al. 2024, METHODS §1c): a correlation-guided mixture of frozen source adapters.

- The target's prompt attends over each frozen source prompt and the input is prefixed with
  `P̃ = P_t + Σ_j softmax_row(P_t P_jᵀ) P_j` (`AttentivePrompt`; only P_t trains).
- Per site, a gate `g = softmax(mean_{prompt positions}(z) · W_g)` (W_g zero-initialised, so the
  start is uniform), one gate vector per example; `delta = Σ_j g_j e_j + A_t(z)` with e_j source
  expert j's output and A_t a trainable target adapter.
- Task Sparsity Loss per site `TSL_l = Σ_j ḡ_j (1 − mean_tokens cos(z, e_j))` with ḡ the gate
  averaged over the batch; the model's loss gains `λ · mean_l TSL_l` (λ = 0.1).

Choices where the paper is silent: the gate and the TSL read the site's input z (= LN(f + x)
for the pfeiffer placement); `mean_tokens` pools every non-padding position of the batch,
prompt positions included; the gate has no bias. Without a prompt (prompt_length 0) the gate
reads the mean over all non-padding tokens instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import AdapterBank
from ..configs import AdapterConfig
from ..sites import ForwardContext
from .tracking import TrackedComposition

PEMT_LEARNING_RATE = 3e-4
DEFAULT_SPARSITY_WEIGHT = 0.1


def masked_token_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T, ...) over the tokens where mask (B, T) is 1: (B, ...)."""
    if mask is None:
        return x.mean(1)
    weights = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def task_sparsity_loss(y: torch.Tensor, experts: torch.Tensor, gate: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """`Σ_j ḡ_j (1 − mean_tokens cos(y, e_j))`; y (B, T, d), experts (B, T, K, d), gate (B, K)."""
    cosine = F.cosine_similarity(y.unsqueeze(-2), experts, dim=-1)  # (B, T, K)
    if mask is None:
        mean_cosine = cosine.mean((0, 1))
    else:
        weights = mask.to(cosine.dtype).unsqueeze(-1)
        mean_cosine = (cosine * weights).sum((0, 1)) / weights.sum((0, 1)).clamp(min=1.0)
    return (gate.mean(0) * (1.0 - mean_cosine)).sum()


class PEMTMixture(TrackedComposition):
    def __init__(self, bank: AdapterBank, adapter: AdapterConfig, sparsity_weight: float, num_sites: int):
        super().__init__(bank.num_adapters)
        self.bank = bank
        self.gate = nn.Parameter(torch.zeros(bank.hidden_size, bank.num_adapters))
        self.target_adapter = AdapterBank(1, bank.hidden_size, adapter)
        self.sparsity_scale = sparsity_weight / num_sites  # λ · mean over sites, one share per site

    def gate_weights(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        """(B, K) softmax gate from the mean of z over the prompt positions."""
        if context.prompt_length:
            query = z[:, : context.prompt_length].mean(1)
        else:
            query = masked_token_mean(z, context.attention_mask)
        return torch.softmax((query @ self.gate).float(), dim=-1)  # fp32 routing also under bf16 autocast

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        gate = self.gate_weights(z, context)
        experts = self.bank.outputs(z)  # (B, T, K, d): the TSL needs every expert's output anyway
        if self.training and self.sparsity_scale:
            loss = task_sparsity_loss(z, experts, gate, context.attention_mask)
            context.auxiliary_losses.append(self.sparsity_scale * loss)
        self.track(gate)
        return torch.einsum("btkd,bk->btd", experts, gate) + self.target_adapter(z)

    def report(self) -> dict:
        """Gate weight per source averaged over the examples of the tracked evaluation passes."""
        return {"weights": self.mean_weights()}


def pad_prompts(prompts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths: (K, L_max, d) zero-padded, and a (K, L_max) bool mask."""
    longest = max(p.shape[0] for p in prompts)
    padded = torch.zeros(len(prompts), longest, prompts[0].shape[1], dtype=prompts[0].dtype)
    mask = torch.zeros(len(prompts), longest, dtype=torch.bool)
    for j, prompt in enumerate(prompts):
        padded[j, : prompt.shape[0]] = prompt
        mask[j, : prompt.shape[0]] = True
    return padded, mask


class AttentivePrompt(nn.Module):
    """The target prefix `P̃ = P_t + Σ_j softmax_row(P_t P_jᵀ) P_j`; called with the batch size.

    `embeddings` is the trainable P_t (the name matches `TaskPrompt`, so artifacts store it as
    `prompt.embeddings`); the source prompts are frozen buffers, padded to one length and masked.
    """

    def __init__(self, target: torch.Tensor, sources: Sequence[torch.Tensor]):
        super().__init__()
        self.embeddings = nn.Parameter(target.clone())
        padded, mask = pad_prompts([s.to(target.dtype) for s in sources])
        self.register_buffer("source_prompts", padded, persistent=False)
        self.register_buffer("source_mask", mask, persistent=False)

    def combined(self) -> torch.Tensor:
        """P̃, (l_t, d)."""
        scores = torch.einsum("ld,kmd->klm", self.embeddings, self.source_prompts)
        scores = scores.masked_fill(~self.source_mask.unsqueeze(1), float("-inf"))
        attended = torch.einsum("klm,kmd->ld", torch.softmax(scores, dim=-1), self.source_prompts)
        return self.embeddings + attended

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.combined().unsqueeze(0).expand(batch_size, -1, -1)


def build_pemt(banks: Sequence[AdapterBank], adapter: AdapterConfig, *,
               sparsity_weight: float = DEFAULT_SPARSITY_WEIGHT) -> list[PEMTMixture]:
    return [PEMTMixture(bank, adapter, sparsity_weight, len(banks)) for bank in banks]
