"""HyperFormer (METHODS §2): one hypernetwork generates every task's houlsby adapters."""

from .composition import GeneratedAdapters, HyperAdapter
from .counting import config_layernorm_count, hyperformer_parameter_count
from .hypernetwork import POSITIONS, HyperNetConfig, HyperNetwork, LayerGenerator, TaskEmbeddings
from .layernorms import layernorm_parameters
from .model import HyperFormerModel, TextHyperFormerModel, load_hyperformer, make_hyperformer, rebuild_hyperformer

__all__ = [
    "POSITIONS",
    "GeneratedAdapters",
    "HyperAdapter",
    "HyperFormerModel",
    "HyperNetConfig",
    "HyperNetwork",
    "LayerGenerator",
    "TaskEmbeddings",
    "TextHyperFormerModel",
    "config_layernorm_count",
    "hyperformer_parameter_count",
    "layernorm_parameters",
    "load_hyperformer",
    "make_hyperformer",
    "rebuild_hyperformer",
]
