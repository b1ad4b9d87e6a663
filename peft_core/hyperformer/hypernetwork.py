"""HyperFormer's hypernetwork (METHODS §2): task, layer-id and position embeddings -> adapter weights.

`I = LN(W2 · ReLU(W1 · [z_τ; l_i; p] + b1) + b2)` is projected once per (layer, position) and
every generator reads it. An encoder-decoder's decoder has its own layer-id and position
embeddings, projector and generators; the task embeddings are shared (`LayerGenerator`). HyperFormer++ shares one projector and one generator set across all
layers and positions (input `[z; l; p]`); HyperFormer has one generator set per position (input
`[z; l]`, the projector is shared), as in the authors' `unique_hyper_net`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..method_names import HYPERFORMER_VARIANTS, HyperFormerVariant

POSITIONS = ("attn", "ffn")  # the houlsby sites' positions, in the order of the position embeddings


@dataclass(frozen=True)
class HyperNetConfig:
    variant: HyperFormerVariant = "hyperformer_plus_plus"
    embedding_dim: int = 64  # z_τ, l_i and p
    projector_hidden_dim: int = 128
    projected_dim: int = 64  # I
    generator_init_std: float = 0.01

    def __post_init__(self) -> None:
        if self.variant not in HYPERFORMER_VARIANTS:
            raise ConfigError(f"unknown HyperFormer variant {self.variant!r}; "
                              f"use one of {', '.join(HYPERFORMER_VARIANTS)}")

    @property
    def shared_across_positions(self) -> bool:
        return self.variant == "hyperformer_plus_plus"

    @property
    def projector_input_dim(self) -> int:
        return self.embedding_dim * (3 if self.shared_across_positions else 2)

    @property
    def num_generator_sets(self) -> int:
        return 1 if self.shared_across_positions else len(POSITIONS)

    def to_dict(self) -> dict:
        return asdict(self)


def generated_shapes(hidden_size: int, bottleneck: int) -> dict[str, tuple[int, ...]]:
    """One site's adapter tensors, named and shaped as in a single-adapter artifact."""
    d, m = hidden_size, bottleneck
    return {"down_weight": (d, m), "down_bias": (m,), "up_weight": (m, d), "up_bias": (d,),
            "ln_weight": (d,), "ln_bias": (d,)}


class TaskEmbeddings(nn.Module):
    """One trainable vector z_τ per task, N(0, 1) initialised."""

    def __init__(self, tasks: list[str], dim: int):
        super().__init__()
        self.tasks = list(tasks)
        self.weight = nn.Parameter(torch.randn(len(self.tasks), dim))

    def index(self, task: str | None) -> int:
        try:
            return self.tasks.index(task)
        except ValueError:
            raise ConfigError(
                f"task {task!r} was not trained with this hypernetwork; known tasks: {', '.join(self.tasks)}"
            ) from None

    def forward(self, task: str | None) -> torch.Tensor:
        return self.weight[self.index(task)]


class AdapterGenerator(nn.Module):
    """G_D, g_D, G_U, g_U, G_γ, G_β stacked into one linear map, so one GEMM generates them all.

    Each block of output rows is exactly one of the paper's generators (same parameters, same
    N(0, std²) init with zero bias); stacking them only saves kernel launches.
    """

    def __init__(self, in_dim: int, hidden_size: int, bottleneck: int, init_std: float):
        super().__init__()
        self.shapes = generated_shapes(hidden_size, bottleneck)
        self.linear = nn.Linear(in_dim, sum(math.prod(s) for s in self.shapes.values()))
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, projected: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., in_dim) -> {name: (..., *shape)}."""
        flat = self.linear(projected).split([math.prod(s) for s in self.shapes.values()], dim=-1)
        return {name: chunk.unflatten(-1, shape) for (name, shape), chunk in zip(self.shapes.items(), flat)}


class LayerGenerator(nn.Module):
    """One stack's layer-id (and position) embeddings, projector and generators: a task embedding z_τ
    -> the adapters of every (layer, position) of the stack, {name: (num_layers, len(POSITIONS), *shape)}.

    An encoder-decoder has one per stack, sharing only the task embeddings: the released code
    (rabeehk/hyperformer, `T5Stack`) gives T5's encoder and decoder each their own
    `AdapterLayers(One)HyperNetController`, while `TaskEmbeddingController` sits on the whole model.
    """

    def __init__(self, num_layers: int, hidden_size: int, reduction_factor: int, config: HyperNetConfig):
        super().__init__()
        self._add_generation(num_layers, hidden_size, reduction_factor, config)

    def _add_generation(self, num_layers: int, hidden_size: int, reduction_factor: int, config: HyperNetConfig) -> None:
        if hidden_size % reduction_factor:
            raise ConfigError(f"hidden size {hidden_size} is not divisible by reduction factor {reduction_factor}")
        e = config.embedding_dim
        self.config = config
        self.layer_embeddings = nn.Parameter(torch.randn(num_layers, e))
        self.position_embeddings = nn.Parameter(torch.randn(len(POSITIONS), e)) if config.shared_across_positions else None
        self.projector = nn.Sequential(
            nn.Linear(config.projector_input_dim, config.projector_hidden_dim),
            nn.ReLU(),
            nn.Linear(config.projector_hidden_dim, config.projected_dim),
            nn.LayerNorm(config.projected_dim),
        )
        self.generators = nn.ModuleList(
            AdapterGenerator(config.projected_dim, hidden_size, hidden_size // reduction_factor, config.generator_init_std)
            for _ in range(config.num_generator_sets)
        )

    def generate(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        num_layers, e = self.layer_embeddings.shape
        if self.position_embeddings is None:
            projected = self.projector(torch.cat([z.expand(num_layers, e), self.layer_embeddings], dim=-1))
            per_position = [generator(projected) for generator in self.generators]
            return {name: torch.stack([w[name] for w in per_position], dim=1) for name in per_position[0]}
        shape = (num_layers, len(POSITIONS), e)
        inputs = torch.cat([z.expand(shape), self.layer_embeddings[:, None].expand(shape),
                            self.position_embeddings[None].expand(shape)], dim=-1)
        return self.generators[0](self.projector(inputs))


class HyperNetwork(LayerGenerator):
    """Generates every site's adapter for one task in one batched call: the task embeddings and the
    first stack's generation (an encoder's), and with `decoder_layers` a decoder's `LayerGenerator`.

    `forward(task)` returns {name: (layers, len(POSITIONS), *shape)}, the decoder's layers after the
    encoder's: index it with (stack's first layer + layer, POSITIONS.index(position)).
    """

    def __init__(self, tasks: list[str], num_layers: int, hidden_size: int, reduction_factor: int,
                 config: HyperNetConfig = HyperNetConfig(), decoder_layers: int = 0):
        # The task embeddings are drawn and registered before the encoder's generation, as in every
        # saved model: the same seed gives the same initial weights and parameter order.
        nn.Module.__init__(self)
        self.task_embeddings = TaskEmbeddings(tasks, config.embedding_dim)
        self._add_generation(num_layers, hidden_size, reduction_factor, config)
        self.decoder = LayerGenerator(decoder_layers, hidden_size, reduction_factor, config) if decoder_layers else None

    @property
    def tasks(self) -> list[str]:
        return self.task_embeddings.tasks

    def forward(self, task: str | None) -> dict[str, torch.Tensor]:
        z = self.task_embeddings(task)
        weights = self.generate(z)
        if self.decoder is None:
            return weights
        decoder = self.decoder.generate(z)
        return {name: torch.cat([w, decoder[name]]) for name, w in weights.items()}
