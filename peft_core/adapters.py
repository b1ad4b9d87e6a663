"""K adapters stacked in one module, so a site computes all K at once: bottleneck adapters here,
LoRA in `lora.py`, both on `StackedAdapters`' up-projection algebra.

`A_j(z) = W_up_j · act(W_down_j · z + b_down_j) + b_up_j` (METHODS §0). The K down-projections are
one (d, K·m) matrix, so they cost a single GEMM; the up-projections are kept per adapter as
(K, m, d) and combined by `mix`, which folds per-adapter weights into that GEMM instead of
materialising K outputs of size d. Compositions that need each adapter's output separately
(AdapterFusion's attention) call `outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .configs import AdapterConfig

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}


class StackedAdapters(nn.Module):
    """K adapters whose outputs are `h_j(z) · U_j (+ b_j)`: `hidden` gives every adapter's hidden
    activations h_j (..., K, m) from one GEMM, `up_weight` (K, m, out) holds the U_j and `up_bias`
    (K, out) the b_j, or is None for adapters without one (LoRA).

    `in_features` is the width of the site input z, `out_features` of the update it returns.
    """

    up_weight: nn.Parameter
    up_bias: nn.Parameter | None

    def __init__(self, num_adapters: int, in_features: int, out_features: int):
        super().__init__()
        self.num_adapters = num_adapters
        self.in_features = in_features
        self.out_features = out_features

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, z: torch.Tensor) -> torch.Tensor:
        """Every adapter's output stacked on a new trailing-but-one axis: (..., K, out)."""
        out = torch.einsum("...km,kmd->...kd", self.hidden(z), self.up_weight)
        return out if self.up_bias is None else out + self.up_bias

    def mix(self, z: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """`Σ_j c_j ⊙ A_j(z)` in one GEMM, for coefficients shared by every token and example.

        `coefficients` is (K, out) or (K, 1) (ScaLearn's ω, averaging): they are folded into the
        up-projection, so the K outputs of size out are never materialised.
        """
        k, m, d = self.up_weight.shape
        if coefficients.shape not in ((k, d), (k, 1)):
            raise ValueError(f"coefficients must be ({k}, {d}) or ({k}, 1), got {tuple(coefficients.shape)}")
        folded = (self.up_weight * coefficients[:, None, :]).reshape(k * m, d)
        out = self.hidden(z).flatten(-2) @ folded
        return out if self.up_bias is None else out + (self.up_bias * coefficients).sum(0)

    def mix_per_example(self, z: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """`Σ_j g_bj · A_j(z_b)` with one weight per example and adapter: z (B, T, in), gates (B, K)."""
        k, m, d = self.up_weight.shape
        scaled = self.hidden(z) * gates[:, None, :, None]  # (B, T, K, m)
        out = scaled.flatten(-2) @ self.up_weight.reshape(k * m, d)
        return out if self.up_bias is None else out + (gates @ self.up_bias).unsqueeze(-2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Sum of all adapters' outputs; for a bank of one, that adapter's output."""
        ones = torch.ones(self.num_adapters, 1, dtype=z.dtype, device=z.device)
        return self.mix(z, ones)

    # -- per-adapter tensors, the layout artifacts are stored in; subclasses name them ------------
    def adapter_state(self, j: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_adapter_state(self, j: int, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def averaged(self, weights: Sequence[float], config: AdapterConfig) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
        """One adapter equal to the `weights`-weighted parameter average of the K (AdapterSoup): its
        config and its `adapter_state`."""
        raise NotImplementedError


class AdapterBank(StackedAdapters):
    """K bottleneck adapters of one width, `hidden_size` (they read and return the hidden state)."""

    def __init__(self, num_adapters: int, hidden_size: int, config: AdapterConfig):
        super().__init__(num_adapters, hidden_size, hidden_size)
        if hidden_size % config.reduction_factor:
            raise ValueError(f"hidden size {hidden_size} is not divisible by reduction factor {config.reduction_factor}")
        self.bottleneck = hidden_size // config.reduction_factor
        k, d, m = num_adapters, hidden_size, self.bottleneck
        self.down_weight = nn.Parameter(torch.randn(d, k * m) * config.init_std)
        self.down_bias = nn.Parameter(torch.zeros(k * m))
        self.up_weight = nn.Parameter(torch.randn(k, m, d) * config.init_std)
        self.up_bias = nn.Parameter(torch.zeros(k, d))
        self.act = ACTIVATIONS[config.activation]()

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """Bottleneck activations of every adapter: (..., K, m)."""
        h = self.act(z @ self.down_weight + self.down_bias)
        return h.unflatten(-1, (self.num_adapters, self.bottleneck))

    def adapter_state(self, j: int) -> dict[str, torch.Tensor]:
        m = self.bottleneck
        return {
            "down_weight": self.down_weight[:, j * m : (j + 1) * m].detach().clone(),
            "down_bias": self.down_bias[j * m : (j + 1) * m].detach().clone(),
            "up_weight": self.up_weight[j].detach().clone(),
            "up_bias": self.up_bias[j].detach().clone(),
        }

    @torch.no_grad()
    def load_adapter_state(self, j: int, state: dict[str, torch.Tensor]) -> None:
        m = self.bottleneck
        self.down_weight[:, j * m : (j + 1) * m].copy_(state["down_weight"])
        self.down_bias[j * m : (j + 1) * m].copy_(state["down_bias"])
        self.up_weight[j].copy_(state["up_weight"])
        self.up_bias[j].copy_(state["up_bias"])

    def averaged(self, weights: Sequence[float], config: AdapterConfig) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
        """Every tensor averaged on its own (a bottleneck is not linear in its parameters, so this is
        the soup, not the average of the outputs)."""
        states = [self.adapter_state(j) for j in range(self.num_adapters)]
        return config, {name: sum(w * state[name] for w, state in zip(weights, states, strict=True))
                        for name in states[0]}
