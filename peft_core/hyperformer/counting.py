"""HyperFormer's trainable-parameter count in closed form, from sizes alone (BENCHMARK B3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModel, PretrainedConfig

from .hypernetwork import POSITIONS, HyperNetConfig
from .layernorms import layernorm_parameter_count


def hyperformer_parameter_count(hidden_size: int, num_layers: int | Sequence[int], num_tasks: int,
                                reduction_factor: int, config: HyperNetConfig = HyperNetConfig(), *,
                                layernorm_params: int = 0, stacks: int = 1) -> dict[str, int]:
    """Trainable parameters by part, heads excluded, and their `total`.

    `stacks` is the number of transformer stacks with their own layer embeddings, projector and
    generators (2 for an encoder-decoder such as T5 in text form, whose encoder and decoder each have
    them, sharing the task embeddings: `LayerGenerator`), each `num_layers` deep; or `num_layers` is
    each stack's depth. `layernorm_params`: the backbone LayerNorm parameters, which train too.
    """
    depths = [num_layers] * stacks if isinstance(num_layers, int) else list(num_layers)
    stacks = len(depths)
    e, h, p = config.embedding_dim, config.projector_hidden_dim, config.projected_dim
    d, m = hidden_size, hidden_size // reduction_factor
    per_generator_set = (p + 1) * (d * m + m + m * d + d + 2 * d)  # W_down, b_down, W_up, b_up, γ, β
    parts = {
        "task_embeddings": num_tasks * e,
        "layer_embeddings": sum(depths) * e,
        "position_embeddings": stacks * len(POSITIONS) * e if config.shared_across_positions else 0,
        "projector": stacks * (config.projector_input_dim * h + h + h * p + p + 2 * p),
        "generators": stacks * config.num_generator_sets * per_generator_set,
        "backbone_layernorms": layernorm_params,
    }
    return parts | {"total": sum(parts.values())}


def config_layernorm_count(config: PretrainedConfig) -> int:
    """LayerNorm parameters of a transformers architecture, counted without allocating weights."""
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return layernorm_parameter_count(model)
