"""AdapterFusion (Pfeiffer et al. 2021, METHODS §1a): attention over the K frozen adapters' outputs.

Per site: `q = z W_Qᵀ + b_Q`, `k_j = up_j W_Kᵀ + b_K`, `v_j = up_j W_Vᵀ` (no value bias, as in
AdapterHub), `a = softmax_j(q·k_j)`, `delta = Σ_j a_j v_j`; W_V starts as the identity and the
regulariser `0.01·‖I − W_V‖²_F` (summed over sites) joins the loss.

Parameters per site: W_Q, W_K with biases and W_V without: 3d² + 2d. For RoBERTa-base
(d = 768, 12 layers) that is 12 × 1,771,008 = 21,252,096, the published count; it does not
depend on the number of sources.

Over LoRA sources up_j is source j's update `s · B_j A_j x` at a wrapped linear module, z is the
module's input x and d its output width: W_Q maps the input width to d (in·d + d parameters), W_K
and W_V act on updates as above.

Keys and values are never computed per source: `q·k_j = (q W_K)·up_j + q·b_K` and
`Σ_j a_j v_j = (Σ_j a_j up_j) W_Vᵀ`, so the d×d projections cost the same for any K (exactly the
same function as the per-source form, only cheaper).

At a text model's decoder sites the attention is per decoder token as anywhere; the report's mean
counts the decoder positions of each answer (`ForwardContext.at`), as a teacher-forced pass on it does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..adapters import StackedAdapters
from ..configs import AdapterConfig
from ..sites import ForwardContext
from .tracking import TrackedComposition

FUSION_LEARNING_RATE = 5e-5
FUSION_INIT_STD = 0.02  # AdapterHub's BERT init for W_Q and W_K; their biases start at zero


class AdapterFusion(TrackedComposition):

    def __init__(self, bank: StackedAdapters, regularization: float = 0.01, attention_dropout: float = 0.1):
        super().__init__(bank.num_adapters)
        d = bank.out_features
        self.bank = bank
        self.regularization = regularization
        self.query = nn.Linear(bank.in_features, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d, bias=False)
        for linear in (self.query, self.key):
            nn.init.normal_(linear.weight, std=FUSION_INIT_STD)
            nn.init.zeros_(linear.bias)
        with torch.no_grad():
            self.value.weight.copy_(torch.eye(d))
        # AdapterHub applies dropout to the attention scores before the softmax.
        self.score_dropout = nn.Dropout(attention_dropout)

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        up = self.bank.outputs(z)  # (B, T, K, d)
        q = self.query(z)
        scores = torch.einsum("btd,btkd->btk", q @ self.key.weight, up) + (q @ self.key.bias).unsqueeze(-1)
        attention = torch.softmax(self.score_dropout(scores).float(), dim=-1)  # fp32 also under bf16 autocast
        self.track(attention, context.attention_mask)
        if self.regularization:
            context.auxiliary_losses.append(self.regularization * self.value_regularizer())
        return self.value(torch.einsum("btk,btkd->btd", attention, up))

    def value_regularizer(self) -> torch.Tensor:
        """‖I − W_V‖²_F."""
        w = self.value.weight
        return (torch.eye(w.shape[0], dtype=w.dtype, device=w.device) - w).pow(2).sum()

    def report(self) -> dict:
        """Mean attention per source over the non-padding tokens of the tracked evaluation passes."""
        return {"weights": self.mean_weights()}


def build_fusion(banks: Sequence[StackedAdapters], adapter: AdapterConfig, *, regularization: float = 0.01,
                 attention_dropout: float = 0.1) -> list[AdapterFusion]:
    return [AdapterFusion(bank, regularization, attention_dropout) for bank in banks]
