"""Adapter sites: wrappers around a backbone's own modules, so no transformers forward code is copied.

A site keeps the wrapped module as `base_layer` (PEFT's convention) and holds a *composition*: the
module that turns the site's input `z` into the residual update `delta` (one adapter, a ScaLearn
mix of K frozen adapters, a fusion, a generated adapter...). With no composition the site is an
exact pass-through, and `detach_sites` puts every original module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .backbones import Backbone


@dataclass
class ForwardContext:
    """Per-call data that transformers' forward signatures cannot carry (set by AdapterModel)."""

    task: str | None = None
    attention_mask: torch.Tensor | None = None  # (B, T), prompt positions included
    prompt_length: int = 0
    auxiliary_losses: list[torch.Tensor] = field(default_factory=list)

    def reset(self, task: str | None, attention_mask: torch.Tensor | None, prompt_length: int) -> None:
        self.task, self.attention_mask, self.prompt_length = task, attention_mask, prompt_length
        self.auxiliary_losses = []


class Composition(nn.Module):
    """What a site does with its adapters. Subclasses implement `forward(z, context) -> delta`.

    `report` returns what the method explains itself with (ω, gate weights, attention), as plain
    lists for JSON.
    """

    def report(self) -> dict:
        return {}


class AdapterSite(nn.Module):
    def __init__(self, base_layer: nn.Module, layer: int, position: str, context: ForwardContext):
        super().__init__()
        self.base_layer = base_layer
        self.layer = layer
        self.position = position
        self.context = context
        self.composition: Composition | None = None

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.position}"


class PostNormSite(AdapterSite):
    """Pfeiffer placement around the FFN output LayerNorm: `LN(s + delta(LN(s)))`, s = f + x.

    This equals METHODS §0's `LN(f + A(LN(f + x)) + x)` with the layer's own LayerNorm used twice.
    """

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        z = self.base_layer(s)
        if self.composition is None:
            return z
        return self.base_layer(s + self.composition(z, self.context))


class ResidualSite(AdapterSite):
    """Houlsby placement around a sub-layer's output projection: `y + delta(y)`, y = sub(x)."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        y = self.base_layer(*args, **kwargs)
        if self.composition is None:
            return y
        return y + self.composition(y, self.context)


PLACEMENTS = {
    "pfeiffer": [("ffn", "ffn_norm", PostNormSite)],
    "houlsby": [("attn", "attn_out", ResidualSite), ("ffn", "ffn_out", ResidualSite)],
}


def attach_sites(backbone: Backbone, placement: str, context: ForwardContext) -> list[AdapterSite]:
    """Wrap every layer's modules for `placement`; returns the sites in (layer, position) order."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement '{placement}'; use one of {sorted(PLACEMENTS)}")
    _check_no_sites(backbone)
    sites = []
    for i, position, site_cls, parent, child in _slots(backbone, placement):
        site = site_cls(getattr(parent, child), i, position, context)
        setattr(parent, child, site)
        sites.append(site)
    return sites


def reattach_sites(backbone: Backbone, placement: str, sites: list[AdapterSite]) -> None:
    """Put sites that `detach_sites` took off back in place (a parked model returns to the backbone)."""
    _check_no_sites(backbone)
    for (_, _, _, parent, child), site in zip(_slots(backbone, placement), sites, strict=True):
        setattr(parent, child, site)


def _check_no_sites(backbone: Backbone) -> None:
    if any(isinstance(m, AdapterSite) for m in backbone.model.modules()):
        # One model per backbone: a second model's detach() would strip the first one's sites.
        raise ValueError(f"backbone '{backbone.name}' already has adapter sites; detach the other model first")


def _slots(backbone: Backbone, placement: str):
    """(layer index, position, site class, parent module, attribute) of every site of `placement`."""
    for i, layer in enumerate(backbone.layers()):
        for position, attr, site_cls in PLACEMENTS[placement]:
            parent_path, _, child = getattr(backbone.layout, attr).rpartition(".")
            yield i, position, site_cls, layer.get_submodule(parent_path) if parent_path else layer, child


def detach_sites(backbone: Backbone) -> None:
    """Put every wrapped module back, leaving the backbone exactly as loaded."""
    for layer in backbone.layers():
        for name, module in list(layer.named_modules()):
            if isinstance(module, AdapterSite):
                parent_path, _, child = name.rpartition(".")
                parent = layer.get_submodule(parent_path) if parent_path else layer
                setattr(parent, child, module.base_layer)
