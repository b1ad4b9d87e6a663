"""What a site does with several adapters, and the registry of transfer methods.

Every transfer method is a builder `build(banks, adapter_config, **options) -> [Composition]`
that receives the frozen source bank (`AdapterBank`, `LoraBank`) of every site (in site order) and returns one
composition per site; building all sites at once is what lets the ++ variants share one ω.

    method = get_method("scalearn")
    compositions = method.compositions(banks, adapter_config, {"omega_dropout": 0.1})

A method may also choose among the fit's sources from their training examples before the model
is built (AdapterSoup: `choose`, whose options are the method's too); `choose_sources` turns the
fit's options into the builder's and a record of the choice.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .. import method_names
from ..adapters import StackedAdapters
from ..configs import AdapterConfig, TrainConfig
from ..errors import ConfigError
from ..sites import Composition
from .average import UniformAverage, build_average
from .fusion import FUSION_LEARNING_RATE, AdapterFusion, build_fusion
from .pemt import LEGACY_OPTIONS as PEMT_LEGACY_OPTIONS, PEMT_LEARNING_RATE, AttentivePrompt, PEMTMixture, build_pemt
from .scalearn import SCALEARN_LEARNING_RATE, SCALEARN_VARIANTS, ScaLearn, ScaLearnVariant
from .single import SingleAdapter
from .soup import CHOICE_DEFAULTS as SOUP_CHOICE, AdapterSoup, build_adaptersoup, choose_soup_sources
from .text_similarity import SourceTexts


@dataclass(frozen=True)
class TransferMethod:
    name: str
    build: Callable[..., list[Composition]]
    learning_rate: float | None = None  # the paper's rate for everything that trains, the new head included
    # PEMT: the target's prompt module, built from the target's description embeddings and the sources'
    # task prompts (which the sources must then carry); None: the method uses no prompts
    target_prompt: Callable[[torch.Tensor, Sequence[torch.Tensor]], nn.Module] | None = None
    # options added after fits of the method were first saved -> the value those fits ran with: a fit
    # records each one's value (its default when not given), and a saved fit without it loads with this
    legacy_options: dict = field(default_factory=dict)
    # AdapterSoup: (the fit's options, its texts) -> (the builder's options, a record of the choice),
    # called before the model is built; `choice_options` are the options it reads (not the builder's)
    choose: Callable[[dict, SourceTexts], tuple[dict, dict]] | None = None
    choice_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        declared = method_names.TRANSFER_OPTIONS[self.name]
        if self.options != declared:
            raise RuntimeError(f"transfer method '{self.name}': its builder takes options {self.options}, "
                               f"peft_core/method_names.py declares {declared}")
        if self.uses_prompts != (self.name in method_names.PROMPT_METHODS):
            raise RuntimeError(f"transfer method '{self.name}': uses_prompts is {self.uses_prompts}, "
                               "peft_core/method_names.py's PROMPT_METHODS says otherwise")

    @property
    def uses_prompts(self) -> bool:
        return self.target_prompt is not None

    def train_config(self, train: TrainConfig, learning_rate: float | Literal["published"] = "published") -> TrainConfig:
        """What a fit of this method runs with: `learning_rate` as given, or for "published" the
        paper's rate (`train.learning_rate` for a method without one, like averaging)."""
        rate = (self.learning_rate or train.learning_rate) if learning_rate == "published" else learning_rate
        return dataclasses.replace(train, learning_rate=rate)

    @property
    def options(self) -> tuple[str, ...]:
        """The method's `method_options`: the keyword options `build` accepts, then `choice_options`."""
        params = inspect.signature(self.build).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY) + self.choice_options

    def check_options(self, options: dict | None) -> dict:
        """`options` (a copy), or a one-line ConfigError naming the unknown option or the bad value."""
        options = dict(options or {})
        problem = method_names.option_problem(self.name, options)
        if problem:
            raise ConfigError(problem)
        return options

    def choose_sources(self, options: dict | None, texts: SourceTexts) -> tuple[dict, dict | None]:
        """The options this fit's compositions are built with, and the record of how its sources
        were chosen (None: the method does not choose)."""
        options = self.check_options(options)
        return (options, None) if self.choose is None else self.choose(options, texts)

    def options_to_record(self, options: dict | None) -> dict:
        """`options` plus the value of every legacy option (one added after fits of the method were
        first saved), so that a saved fit reloads with the value it ran with."""
        defaults = inspect.signature(self.build).parameters
        return {**{name: defaults[name].default for name in self.legacy_options}, **(options or {})}

    def recorded_options(self, recorded: dict | None) -> dict:
        """The options a saved fit ran with, from those its artifact records."""
        return {**self.legacy_options, **(recorded or {})}

    def compositions(self, banks: Sequence[StackedAdapters], adapter: AdapterConfig,
                     options: dict | None = None) -> list[Composition]:
        options = self.check_options(options)
        return self.build(banks, adapter, **{k: v for k, v in options.items() if k not in self.choice_options})


TRANSFER_METHODS: dict[str, TransferMethod] = method_names.implemented(
    "transfer method", method_names.TRANSFER_METHODS, {
        "average": TransferMethod("average", build_average),
        "adaptersoup": TransferMethod("adaptersoup", build_adaptersoup, choose=choose_soup_sources,
                                      choice_options=tuple(SOUP_CHOICE)),
        "adapterfusion": TransferMethod("adapterfusion", build_fusion, learning_rate=FUSION_LEARNING_RATE),
        **{name: TransferMethod(name, variant.build, learning_rate=SCALEARN_LEARNING_RATE)
           for name, variant in SCALEARN_VARIANTS.items()},
        "pemt": TransferMethod("pemt", build_pemt, learning_rate=PEMT_LEARNING_RATE, target_prompt=AttentivePrompt,
                               legacy_options=PEMT_LEGACY_OPTIONS),
    })


def get_method(name: str) -> TransferMethod:
    try:
        return TRANSFER_METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown transfer method '{name}'; use one of: {', '.join(TRANSFER_METHODS)}") from None


__all__ = [
    "TRANSFER_METHODS", "AdapterFusion", "AdapterSoup", "AttentivePrompt", "PEMTMixture", "ScaLearn",
    "ScaLearnVariant", "SingleAdapter", "SourceTexts", "TransferMethod", "UniformAverage", "get_method",
]
