"""The backbone's own LayerNorms, for methods that train them alongside their adapters
(HyperFormer; PEMT's stage 2 as its released code runs it).

They are named by their path in the backbone as loaded (`embeddings.LayerNorm.weight`, ...): a
LayerNorm that a site wraps keeps its own path (the site's `base_layer` is left out of it), and
LayerNorms inside adapter compositions are not the backbone's and are left out. Training them
changes the shared backbone in place, so a model that trains them puts the originals back when it
detaches (`LayerNormSnapshot`, `train_backbone_layernorms`).
"""

from __future__ import annotations

import torch
from torch import nn

from .sites import AdapterSite, Composition


def _is_layernorm(module: nn.Module) -> bool:
    # T5LayerNorm and friends are not nn.LayerNorm subclasses.
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("LayerNorm")


def _path_as_loaded(name: str, sites: list[str]) -> str:
    """`name` with a site's `.base_layer` step left out (the wrapped module's own path)."""
    for site in sites:
        if name == f"{site}.base_layer" or name.startswith(f"{site}.base_layer."):
            return site + name[len(site) + len(".base_layer"):]
    return name


def layernorm_parameters(encoder: nn.Module) -> dict[str, nn.Parameter]:
    modules = list(encoder.named_modules())
    adapter_prefixes = tuple(f"{name}." for name, m in modules if isinstance(m, Composition))
    sites = [name for name, m in modules if isinstance(m, AdapterSite)]
    return {
        f"{_path_as_loaded(name, sites)}.{param_name}": param
        for name, module in modules
        if _is_layernorm(module) and not name.startswith(adapter_prefixes)
        for param_name, param in module.named_parameters(recurse=False)
    }


class LayerNormSnapshot:
    """The backbone LayerNorms as they were, to put back when a model that trained them detaches."""

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.saved = {name: p.detach().clone() for name, p in layernorm_parameters(encoder).items()}

    @torch.no_grad()
    def restore(self) -> None:
        params = layernorm_parameters(self.encoder)
        for name, value in self.saved.items():
            params[name].copy_(value)
            params[name].requires_grad_(False)


def train_backbone_layernorms(model) -> None:
    """Let the backbone's LayerNorms train with `model` (an `AdapterModel`); its `detach()` puts the
    values they had back and freezes them again."""
    model.restore_on_detach.append(LayerNormSnapshot(model.encoder).restore)
    for p in layernorm_parameters(model.encoder).values():
        p.requires_grad_(True)


def layernorm_parameter_count(encoder: nn.Module) -> int:
    return sum(p.numel() for p in layernorm_parameters(encoder).values())
