"""Settings of the method library as plain dataclasses (the pipeline's pydantic config maps onto these)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .precision import Precision, resolve_precision


@dataclass(frozen=True)
class AdapterConfig:
    """A bottleneck adapter: `W_up · act(W_down · z + b_down) + b_up` (METHODS §0)."""

    placement: Literal["pfeiffer", "houlsby"] = "pfeiffer"
    reduction_factor: int = 16
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"
    init_std: float = 0.02
    layer_norm_after: bool = False  # a LayerNorm on the adapter output (houlsby option, HyperFormer)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """One training loop's settings; shared by source adapters, transfer fits and baselines."""

    learning_rate: float = 3e-4
    batch_size: int = 32
    eval_batch_size: int = 64
    epochs: int = 10
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    patience: int = 3
    seed: int = 42
    max_steps_per_epoch: int | None = None
    max_steps: int | None = None  # a fixed step budget (few-shot protocols): epochs = ceil(steps / steps per epoch)
    precision: Precision = "auto"  # resolved on construction to what runs here: "bf16" or "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision))

    def to_dict(self) -> dict:
        return asdict(self)
