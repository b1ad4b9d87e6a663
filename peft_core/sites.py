"""Adapter sites: wrappers around a backbone's own modules, so no transformers forward code is copied.

A site keeps the wrapped module as `base_layer` (PEFT's convention) and holds a *composition*: the
module that turns the site's input `z` into the residual update `delta` (one adapter, a ScaLearn
mix of K frozen adapters, a fusion, a generated adapter...). With no composition the site is an
exact pass-through, and `detach_sites` puts every original module back.

A composition that needs more of its site than `z` reads a `SiteView`: the sub-layer's own output
(what it adds to the residual stream before any adapter) and the adapter input as it would be
after an update of the composition's own (so it can stack a second adapter on the first update).

Where the sites are is a *placement*: a bottleneck placement by name ("pfeiffer", "houlsby"), or
a LoRA's, one `LoraSite` per wrapped linear module (`lora_placement`); `adapter_kinds.placement_of`
gives an adapter config's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .architectures import ArchitectureLayout
from .backbones import Backbone, module_widths
from .errors import BackboneError


@dataclass
class ForwardContext:
    """Per-call data that transformers' forward signatures cannot carry (set by AdapterModel).

    A site reads the context of its own stack (`at`). A text model's decoder sites have one of
    their own (`set_decoder`): `attention_mask` marks the decoder positions that count (a
    teacher-forced pass's target positions; while generating, each step's row until it has fed the
    end-of-sequence token), there is no prompt among them, and `encoder` is the encoder's context:
    its mask, its prompt length and, once it has run, its `output`.
    """

    task: str | None = None
    attention_mask: torch.Tensor | None = None  # (B, T) of this context's positions, prompt positions included
    prompt_length: int = 0
    auxiliary_losses: list[torch.Tensor] = field(default_factory=list)
    output: torch.Tensor | None = None  # (B, T, d): the encoder's output, where a text model sets it
    # a decoder context: the encoder's; an encoder's: the decoder sites' context of this call
    encoder: ForwardContext | None = field(default=None, repr=False, compare=False)
    decoder: ForwardContext | None = field(default=None, repr=False, compare=False)

    def reset(self, task: str | None, attention_mask: torch.Tensor | None, prompt_length: int) -> None:
        self.task, self.attention_mask, self.prompt_length = task, attention_mask, prompt_length
        self.auxiliary_losses = []
        self.output = self.decoder = None

    def set_decoder(self, encoder_output: torch.Tensor, attention_mask: torch.Tensor | None) -> ForwardContext:
        """After `reset`, once the encoder has run: the decoder sites' context of this call (the
        auxiliary losses are this context's list); `attention_mask` (B, T_dec) or None (every position)."""
        self.output = encoder_output
        self.decoder = ForwardContext(self.task, attention_mask, 0, self.auxiliary_losses, encoder=self)
        return self.decoder

    def at(self, stack: str) -> ForwardContext:
        """The context of the sites of `stack` (a site-key prefix): this one for the encoder's (""),
        the decoder's for any other (one without a mask or an encoder output where none was set)."""
        if not stack:
            return self
        if self.decoder is None:
            self.decoder = ForwardContext(self.task, None, 0, self.auxiliary_losses, encoder=self)
        return self.decoder


@dataclass
class SiteView:
    """What a composition may read at its site, for one call.

    `z`: the adapter input. `sublayer_output`: what the sub-layer adds to the residual stream
    before any adapter (houlsby: `sub(x)`, which is z; pfeiffer: the FFN output f after dropout,
    which the site observes; None where the site has not observed it). `adapter_input(delta)`: z
    as it is once `delta` has been added to the residual update (houlsby `sub(x) + delta`,
    pfeiffer `LN(f + x + delta)`).
    """

    z: torch.Tensor
    sublayer_output: torch.Tensor | None
    adapter_input: Callable[[torch.Tensor], torch.Tensor]


class Composition(nn.Module):
    """What a site does with its adapters. Subclasses implement `forward(z, context) -> delta`; one
    that needs more of its site than z overrides `site_delta` (PEMT's `forward` then takes the whole
    `SiteView`: call compositions through `site_delta`).

    `report` returns what the method explains itself with (ω, gate weights, attention), as plain
    lists for JSON. `trains_backbone_layernorms`: the backbone's own LayerNorms train alongside
    this composition (the model saves them with it and puts the originals back when it detaches).
    """

    trains_backbone_layernorms: bool = False

    def site_delta(self, site: SiteView, context: ForwardContext) -> torch.Tensor:
        """The residual update at `site`; by default `forward(site.z, context)`."""
        return self(site.z, context)

    def report(self) -> dict:
        return {}

    def place(self, site: AdapterSite, hidden_size: int) -> None:
        """Called when a model sets this composition at `site` (`hidden_size`: its backbone's); a
        composition whose shape depends on where it sits sizes itself here (PEMT's gate at a decoder site)."""


def site_key(layer: int, position: str, stack: str = "") -> str:
    """A site's name among a model's sites and in an artifact: `<layer>.<position>`, after its
    stack's prefix (a text model's decoder layers: `decoder.<layer>.<position>`)."""
    return f"{stack}{layer}.{position}"


class AdapterSite(nn.Module):
    def __init__(self, base_layer: nn.Module, layer: int, position: str, context: ForwardContext, stack: str = ""):
        super().__init__()
        self.base_layer = base_layer
        self.layer = layer
        self.position = position
        self.context = context
        self.stack = stack
        self.composition: Composition | None = None

    @property
    def key(self) -> str:
        return site_key(self.layer, self.position, self.stack)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped module's weight: transformers' forward code reads it off the module (T5's FFN
        casts its input to `wo.weight`'s dtype)."""
        return self.base_layer.weight

    @property
    def in_features(self) -> int:
        """The width of the adapter input z (a bottleneck site's: the wrapped module's output width,
        the hidden size)."""
        return module_widths(self.base_layer)[1]

    @property
    def out_features(self) -> int:
        """The width of the update the composition returns."""
        return module_widths(self.base_layer)[1]

    def bind(self, layer: nn.Module, layout: ArchitectureLayout) -> None:
        """Called when the site is put in place in `layer` (`layout` names its modules);
        a site that observes other modules of its layer hooks them here."""

    def unbind(self) -> None:
        """Called when the site is taken off: remove whatever `bind` added to the backbone."""


class PostNormSite(AdapterSite):
    """Pfeiffer placement around the FFN output LayerNorm: `LN(s + delta(LN(s)))`, s = f + x.

    This equals METHODS §0's `LN(f + A(LN(f + x)) + x)` with the layer's own LayerNorm used twice.
    The LayerNorm only receives the sum s, so the site observes f itself: a forward hook on the
    dropout after the FFN's output projection (`layout.ffn_dropout`) keeps its output for the call.
    """

    def __init__(self, base_layer: nn.Module, layer: int, position: str, context: ForwardContext, stack: str = ""):
        super().__init__(base_layer, layer, position, context, stack)
        self._hook = None
        self._ffn_output: torch.Tensor | None = None

    def bind(self, layer: nn.Module, layout: ArchitectureLayout) -> None:
        self._hook = layer.get_submodule(layout.ffn_dropout).register_forward_hook(self._observe)

    def unbind(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._ffn_output = None

    def _observe(self, module: nn.Module, args, output: torch.Tensor) -> None:
        self._ffn_output = output

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        f, self._ffn_output = self._ffn_output, None  # used by this call only, never kept
        z = self.base_layer(s)
        if self.composition is None:
            return z
        site = SiteView(z, f, lambda delta: self.base_layer(s + delta))
        return self.base_layer(s + self.composition.site_delta(site, self.context.at(self.stack)))


class ResidualSite(AdapterSite):
    """Houlsby placement around a sub-layer's output projection: `y + delta(y)`, y = sub(x)."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        y = self.base_layer(*args, **kwargs)
        if self.composition is None:
            return y
        return y + self.composition.site_delta(SiteView(y, y, lambda delta: y + delta), self.context.at(self.stack))


class LoraSite(AdapterSite):
    """A LoRA's site, around one linear module W of the layer: `W x + delta(x)`, delta reading W's
    input x (`in_features` wide) and returning an update of W's output width. The update does not
    change x, so the adapter input after it is x again; the sub-layer output is W x."""

    def __init__(self, base_layer: nn.Module, layer: int, position: str, context: ForwardContext, stack: str = ""):
        if not isinstance(base_layer, (nn.Linear, Conv1D)):
            raise BackboneError(f"LoRA target '{position}' of layer {layer} is a {type(base_layer).__name__}, "
                                "not a linear module; choose adapter.lora_targets among the layer's linear modules")
        super().__init__(base_layer, layer, position, context, stack)

    @property
    def in_features(self) -> int:
        return module_widths(self.base_layer)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.composition is None:
            return y
        return y + self.composition.site_delta(SiteView(x, y, lambda delta: x), self.context.at(self.stack))


# (position, the layout's module role, site class) of each site of a layer
Placement = Sequence[tuple[str, str, type[AdapterSite]]]
PLACEMENTS: dict[str, Placement] = {
    "pfeiffer": [("ffn", "ffn_norm", PostNormSite)],
    "houlsby": [("attn", "attn_out", ResidualSite), ("ffn", "ffn_out", ResidualSite)],
}
# A pre-norm layer has no LayerNorm after its sub-layers: "pfeiffer" acts on the FFN's output there.
PRE_NORM_PLACEMENTS: dict[str, Placement] = {**PLACEMENTS, "pfeiffer": [("ffn", "ffn_out", ResidualSite)]}


def placement_sites(placement: str | Placement, layout: ArchitectureLayout) -> Placement:
    """The (position, role, site class) of each site `placement` puts in a layer of `layout`."""
    if not isinstance(placement, str):
        return placement
    return (PRE_NORM_PLACEMENTS if layout.norm == "pre" else PLACEMENTS)[placement]


def lora_placement(targets: Sequence[str]) -> Placement:
    """A LoRA site on each target module (a role of the architecture layout), named by its role."""
    return tuple((role, role, LoraSite) for role in targets)


def attach_sites(backbone: Backbone, placement: str | Placement, context: ForwardContext) -> list[AdapterSite]:
    """Wrap every layer's modules for `placement`; returns the sites in (layer, position) order."""
    if isinstance(placement, str) and placement not in PLACEMENTS:
        raise ValueError(f"unknown placement '{placement}'; use one of {sorted(PLACEMENTS)}")
    _check_no_sites(backbone)
    sites = []
    try:
        for stack, layout, i, layer, position, site_cls, parent, child in _slots(backbone, placement):
            site = site_cls(getattr(parent, child), i, position, context, stack)
            setattr(parent, child, site)
            site.bind(layer, layout)
            sites.append(site)
    except BackboneError:  # a module this placement cannot wrap: leave the backbone as loaded
        detach_sites(backbone)
        raise
    return sites


def reattach_sites(backbone: Backbone, placement: str | Placement, sites: list[AdapterSite]) -> None:
    """Put sites that `detach_sites` took off back in place (a parked model returns to the backbone)."""
    _check_no_sites(backbone)
    for (_, layout, _, layer, _, _, parent, child), site in zip(_slots(backbone, placement), sites, strict=True):
        setattr(parent, child, site)
        site.bind(layer, layout)


def _check_no_sites(backbone: Backbone) -> None:
    if any(isinstance(m, AdapterSite) for m in backbone.model.modules()):
        # One model per backbone: a second model's detach() would strip the first one's sites.
        raise ValueError(f"backbone '{backbone.name}' already has adapter sites; detach the other model first")


def _slots(backbone: Backbone, placement: str | Placement):
    """(stack prefix, its layout, layer index, layer, position, site class, parent module, attribute)
    of every site of `placement`, stack by stack (a text model's encoder, then its decoder)."""
    for stack, layers, layout in backbone.stacks():
        sites = placement_sites(placement, layout)
        for i, layer in enumerate(layers):
            for position, role, site_cls in sites:
                parent_path, _, child = backbone.module_path(role, layout).rpartition(".")
                parent = layer.get_submodule(parent_path) if parent_path else layer
                yield stack, layout, i, layer, position, site_cls, parent, child


def detach_sites(backbone: Backbone) -> None:
    """Put every wrapped module back, leaving the backbone exactly as loaded."""
    for layer in (layer for _, layers, _ in backbone.stacks() for layer in layers):
        for name, module in list(layer.named_modules()):
            if isinstance(module, AdapterSite):
                module.unbind()
                parent_path, _, child = name.rpartition(".")
                parent = layer.get_submodule(parent_path) if parent_path else layer
                setattr(parent, child, module.base_layer)
