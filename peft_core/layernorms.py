"""The backbone's own LayerNorms, for methods that train them alongside their adapters
(HyperFormer; PEMT's stage 2 as its released code runs it).

They are named by their path in the backbone as loaded (`embeddings.LayerNorm.weight`, ...), whatever
sites wrap them now; LayerNorms inside adapter compositions are not the backbone's and are left out.
A model that trains them overrides them (`AdapterModel.override_backbone`), so the shared backbone
gets the originals back when it detaches.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .backbones import Backbone


def _is_layernorm(module: nn.Module) -> bool:
    # T5LayerNorm, LlamaRMSNorm and friends are not nn.LayerNorm subclasses.
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def _layernorms(modules: Iterable[tuple[str, nn.Module]]) -> dict[str, nn.Parameter]:
    return {f"{path}.{name}": param for path, module in modules if _is_layernorm(module)
            for name, param in module.named_parameters(recurse=False)}


def layernorm_parameters(backbone: Backbone) -> dict[str, nn.Parameter]:
    """{path as loaded: parameter} of the backbone's LayerNorms."""
    return _layernorms(backbone.state.modules.items())


def layernorm_parameter_count(encoder: nn.Module) -> int:
    """The LayerNorm parameters of an encoder with no sites on it (one built from a config)."""
    return sum(p.numel() for p in _layernorms(encoder.named_modules()).values())
