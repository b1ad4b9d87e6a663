"""PEMT (Lin et al. 2024, METHODS §1c): a correlation-guided mixture of frozen source adapters.

- The target's prompt attends over each frozen source prompt and the input is prefixed with
  `P̃ = P_t + Σ_j softmax_row(P_t P_jᵀ) P_j` (`AttentivePrompt`; only P_t trains).
- Per site, a gate `g = softmax(mean_{prompt positions}(z) · W_g)` (W_g zero-initialised, so the
  start is uniform), one gate vector per example, mixes the source experts' outputs e_j(z):
  `mix = Σ_j g_j e_j`.
- A trainable target adapter A_t (`target_adapter`):
  - "sequential" (the default, the released code's): A_t reads the site's adapter input as it is
    after the mixture update, `delta = mix + A_t(z')`, with `z' = LN(f + x + mix)` for the
    pfeiffer placement and `z' = sub(x) + mix` for houlsby. The released code (T5, houlsby-like,
    `y = A_t(M) + M` with `M = FFN(h) + mix`) is exactly the houlsby form; the pfeiffer form follows
    that placement's convention of an adapter reading the LayerNorm of the residual stream.
  - "parallel": A_t reads the same z as the experts, `delta = mix + A_t(z)` (what this module
    computed before; the paper's figure can be read either way).
- Task Sparsity Loss per site `TSL_l = Σ_j ḡ_j (1 − mean_tokens cos(y, e_j))` with ḡ the gate
  averaged over the batch and y the sub-layer's output, gated mixture and target adapter included,
  as the paper and its released code compute it: `y = sub(x) + delta` for houlsby (the site's
  output) and, for pfeiffer, `y = f + delta`, what the FFN sub-layer adds to the residual stream
  (f the FFN output after dropout, observed by the site; `SiteView.sublayer_output`). The model's
  loss gains `λ · mean_l TSL_l` (λ = 0.1).
- `train_layernorms` (default True, the released code's `unfreeze_layer_norms` in stage 2): the
  backbone's own LayerNorms train too; they are saved with the fit (as backbone overrides) and put
  back when the model detaches. The paper does not mention them.

In text-to-text form (T5, the paper's own setting) the decoder's sites have experts, gate, target
adapter and sparsity loss too, as the released code (`third_party/models/t5/modeling_t5.py`) puts
them in every block of both stacks (`task_adapter_in_decoder` defaults to true). The prompt prefixes
the encoder's input only, and the released code's decoder gate reads the encoder's output at the
prompt positions (`encoder_hidden_states[:, :task_prefix_len].mean(1)`, a d_model-wide gate where
the encoder's is d_ff wide): one gate vector per example, the same at every decoder position, so a
greedy decoding step by step computes what a teacher-forced pass on its answer computes. A decoder
site's sparsity loss pools the decoder's target positions (the code: every decoder position,
padding included), and the mean over sites spans both stacks (the code's mean over both stacks'
layers).

Choices where the paper is silent, or where we follow the paper rather than the code: at an
encoder site the gate reads the site's input z (the released code gates on the FFN's intermediate
activations at the prompt positions); the experts are the sources' adapters: bottleneck adapters on
z as the paper describes, or LoRA, as in the released code (rank-64 LoRA on the FFN output
projection; sources with `lora_targets: [ffn_out]` and `lora_rank: 64` are that setting). At a LoRA site z is the
wrapped module's input (for ffn_out the FFN's intermediate activations, what the released code's
gate reads), the target adapter is a LoRA of the sources' settings on the same module,
and since the update leaves that input unchanged, "sequential" and "parallel" compute the same;
y is the module's output with every update. `mean_tokens` pools every non-padding position of the
batch, prompt positions included (the code pools every position, padding included); the gate has no
bias. Without a prompt (prompt_length 0) the gate reads the mean over all non-padding tokens instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..adapter_kinds import adapter_bank
from ..adapters import StackedAdapters
from ..configs import AdapterConfig
from ..method_names import PemtTargetAdapter as TargetAdapterPlacement
from ..sites import AdapterSite, ForwardContext, SiteView
from .tracking import TrackedComposition

PEMT_LEARNING_RATE = 3e-4
DEFAULT_SPARSITY_WEIGHT = 0.1
# what PEMT artifacts written before these options existed ran with
LEGACY_OPTIONS = {"target_adapter": "parallel", "train_layernorms": False}


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
    """One site's gate, target adapter and sparsity loss; called with the whole `SiteView`."""

    def __init__(self, bank: StackedAdapters, adapter: AdapterConfig, sparsity_weight: float, num_sites: int,
                 target_adapter: TargetAdapterPlacement = "sequential", train_layernorms: bool = True):
        super().__init__(bank.num_adapters)
        self.bank = bank
        self.gate = nn.Parameter(torch.zeros(bank.in_features, bank.num_adapters))
        self.target_adapter = adapter_bank(1, bank.in_features, bank.out_features, adapter)
        self.sequential = target_adapter == "sequential"
        self.trains_backbone_layernorms = train_layernorms
        self.sparsity_scale = sparsity_weight / num_sites  # λ · mean over sites, one share per site

    def place(self, site: AdapterSite, hidden_size: int) -> None:
        """At a decoder site the gate reads the encoder's output, `hidden_size` wide (the released
        code's decoder gate is d_model wide where its encoder gate is d_ff wide)."""
        if site.stack and self.gate.shape[0] != hidden_size:
            self.gate = nn.Parameter(self.gate.new_zeros(hidden_size, self.num_sources))

    def gate_weights(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        """(B, K) softmax gate from the mean of z over the prompt positions; at a decoder site (a
        context with an `encoder`), from the mean of the encoder's output over its prompt positions."""
        if context.encoder is not None:
            context = context.encoder
            z = context.output
            if z is None:
                raise RuntimeError("PEMT's gate at a decoder site reads the encoder's output, which this call did not "
                                   "set; run the model through TextToTextModel")
        if context.prompt_length:
            query = z[:, : context.prompt_length].mean(1)
        else:
            query = masked_token_mean(z, context.attention_mask)
        return torch.softmax((query @ self.gate).float(), dim=-1)  # fp32 routing also under bf16 autocast

    def site_delta(self, site: SiteView, context: ForwardContext) -> torch.Tensor:
        return self(site, context)

    def forward(self, site: SiteView, context: ForwardContext) -> torch.Tensor:
        z = site.z
        gate = self.gate_weights(z, context)
        experts = self.bank.outputs(z)  # (B, T, K, d): the TSL needs every expert's output anyway
        mix = torch.einsum("btkd,bk->btd", experts, gate)
        delta = mix + self.target_adapter(site.adapter_input(mix) if self.sequential else z)
        if self.training and self.sparsity_scale:
            if site.sublayer_output is None:
                raise RuntimeError("PEMT's sparsity loss needs the sub-layer output, which this site did not observe")
            loss = task_sparsity_loss(site.sublayer_output + delta, experts, gate, context.attention_mask)
            context.auxiliary_losses.append(self.sparsity_scale * loss)
        self.track(gate)
        return delta

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


def build_pemt(banks: Sequence[StackedAdapters], adapter: AdapterConfig, *,
               sparsity_weight: float = DEFAULT_SPARSITY_WEIGHT,
               target_adapter: TargetAdapterPlacement = "sequential",
               train_layernorms: bool = True) -> list[PEMTMixture]:
    """`target_adapter`: "sequential" (after the mixture, the released code's) or "parallel" (beside
    the experts); `train_layernorms`: the backbone's LayerNorms train too (the released code's)."""
    return [PEMTMixture(bank, adapter, sparsity_weight, len(banks), target_adapter, train_layernorms)
            for bank in banks]
