"""The adapter kinds as a table, one row per `AdapterConfig.kind`: where its sites are, the bank
that stacks K adapters of one site, and the settings sources must share to be stacked.

    model = AdapterModel(backbone, placement_of(adapter))
    bank = adapter_bank(len(sources), site.in_features, site.out_features, adapter)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .adapters import AdapterBank, StackedAdapters
from .configs import AdapterConfig
from .lora import LoraBank
from .sites import Placement, lora_placement


@dataclass(frozen=True)
class AdapterKindRow:
    placement: Callable[[AdapterConfig], str | Placement]
    bank: Callable[[int, int, int, AdapterConfig], StackedAdapters]  # (K, in features, out features, config)
    stacked_settings: tuple[str, ...]  # what sources stacked in one bank must agree on


ADAPTER_KINDS: dict[str, AdapterKindRow] = {
    "bottleneck": AdapterKindRow(lambda adapter: adapter.placement,
                                 lambda k, width, _, adapter: AdapterBank(k, width, adapter),
                                 ("placement", "reduction_factor", "activation")),
    "lora": AdapterKindRow(lambda adapter: lora_placement(adapter.lora_targets), LoraBank,
                           ("lora_rank", "lora_alpha", "lora_targets")),
}


def placement_of(adapter: AdapterConfig) -> str | Placement:
    """Where `adapter`'s sites are: a bottleneck placement's name, or a site per LoRA target."""
    return ADAPTER_KINDS[adapter.kind].placement(adapter)


def adapter_bank(num_adapters: int, in_features: int, out_features: int, adapter: AdapterConfig) -> StackedAdapters:
    """K fresh adapters of `adapter`'s kind for a site of these widths."""
    return ADAPTER_KINDS[adapter.kind].bank(num_adapters, in_features, out_features, adapter)
