"""The composition at each houlsby site: an adapter whose weights the hypernetwork generated.

delta = LN_cond(A(y)) with A's weights and the LayerNorm's γ, β generated for `context.task`;
the site adds y (METHODS §0 houlsby with a LayerNorm after the adapter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import ACTIVATIONS
from ..sites import AdapterSite, Composition, ForwardContext
from .hypernetwork import POSITIONS, HyperNetwork


class GeneratedAdapters:
    """Every site's weights for one task, generated on first use and kept until `clear()`.

    The model clears it after each forward pass, so the hypernetwork runs once per batch and
    the sites of that pass share one generation (and one autograd graph into the hypernetwork).
    A plain object rather than a module: the hypernetwork is registered once, on the model.
    """

    def __init__(self, hypernetwork: HyperNetwork):
        self.hypernetwork = hypernetwork
        self.clear()

    def clear(self) -> None:
        self.task: str | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def for_task(self, task: str | None) -> dict[str, torch.Tensor]:
        if self.weights is None or self.task != task:
            self.weights, self.task = self.hypernetwork(task), task
        return self.weights


class HyperAdapter(Composition):
    def __init__(self, site: AdapterSite, generated: GeneratedAdapters, activation: str, first_layer: int = 0):
        """`first_layer`: the generated row of the site's stack's layer 0 (a decoder's: after the encoder's)."""
        super().__init__()
        self.index = (first_layer + site.layer, POSITIONS.index(site.position))
        self.generated = generated
        self.act = ACTIVATIONS[activation]()

    def weights(self, task: str | None) -> dict[str, torch.Tensor]:
        """This site's generated tensors, in the single-adapter artifact layout."""
        return {name: w[self.index] for name, w in self.generated.for_task(task).items()}

    def forward(self, z: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        w = self.weights(context.task)
        out = self.act(z @ w["down_weight"] + w["down_bias"]) @ w["up_weight"] + w["up_bias"]
        return F.layer_norm(out, out.shape[-1:], w["ln_weight"], w["ln_bias"])
