"""Settings of the method library as plain dataclasses (the pipeline's pydantic config maps onto these)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from .errors import ConfigError
from .precision import Precision, resolve_precision

AdapterKind = Literal["bottleneck", "lora"]
# the backbone linear modules a LoRA may wrap: roles of backbones.ArchitectureLayout, which checks them
LoraTarget = Literal["query", "key", "value", "qkv", "attn_out", "ffn_in", "ffn_out"]

# the settings each kind computes with, which is all its `to_dict` holds
BOTTLENECK_FIELDS = ("placement", "reduction_factor", "activation", "init_std", "layer_norm_after")
LORA_FIELDS = ("kind", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets")


@dataclass(frozen=True)
class AdapterConfig:
    """An adapter of one of two kinds.

    - "bottleneck": `W_up · act(W_down · z + b_down) + b_up` at the sites of `placement` (METHODS §0).
    - "lora": each `lora_targets` linear module of every layer, W, computes
      `W x + (lora_alpha / lora_rank) · B A dropout(x)` (Hu et al. 2021; PEFT's LoRA, whose default
      targets are the attention query and value). The bottleneck fields do not apply.
    """

    placement: Literal["pfeiffer", "houlsby"] = "pfeiffer"
    reduction_factor: int = 16
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"
    init_std: float = 0.02
    layer_norm_after: bool = False  # a LayerNorm on the adapter output (houlsby option, HyperFormer)
    kind: AdapterKind = "bottleneck"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[LoraTarget, ...] = ("query", "value")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))  # a list, as JSON gives it back
        problem = self._problem()
        if problem:
            raise ConfigError(f"adapter: {problem}")

    def _problem(self) -> str | None:
        if self.kind not in get_args(AdapterKind):
            return f"unknown kind {self.kind!r}; use one of {', '.join(get_args(AdapterKind))}"
        if self.kind != "lora":
            return None
        unknown = [t for t in self.lora_targets if t not in get_args(LoraTarget)]
        if unknown or not self.lora_targets or len(set(self.lora_targets)) < len(self.lora_targets):
            return (f"lora_targets {list(self.lora_targets)} must name distinct modules among "
                    f"{', '.join(get_args(LoraTarget))}")
        if self.lora_rank <= 0 or not 0 <= self.lora_dropout < 1:
            return f"lora_rank must be positive and lora_dropout in [0, 1), not {self.lora_rank} and {self.lora_dropout}"
        if self.layer_norm_after:
            return "layer_norm_after is a bottleneck option; a LoRA has no LayerNorm after it"
        return None

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank

    def to_dict(self) -> dict:
        """The settings of this config's kind. A bottleneck config gives exactly the dict it gave before
        LoRA existed, without `kind` (unit keys and saved artifacts hash it); a dict without `kind`
        rebuilds as a bottleneck."""
        settings = asdict(self) | {"lora_targets": list(self.lora_targets)}  # as JSON gives it back
        return {name: settings[name] for name in (LORA_FIELDS if self.kind == "lora" else BOTTLENECK_FIELDS)}


@dataclass(frozen=True)
class EvalSettings:
    """How a model is evaluated: its batch size, and the precision it computes in (resolved on
    construction, like TrainConfig's, to what runs here)."""

    batch_size: int = 64
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision))


UNSET_UNLESS_GIVEN = ("head_learning_rate",)


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
    head_learning_rate: float | None = None  # the task heads' own rate (None: learning_rate, as the papers train)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision))

    @property
    def evaluation(self) -> EvalSettings:
        return EvalSettings(self.eval_batch_size, self.precision)

    def to_dict(self) -> dict:
        # A setting added later enters the dict, and so every unit's key, only when it is set: units
        # trained before it existed keep their keys.
        return {k: v for k, v in asdict(self).items() if not (k in UNSET_UNLESS_GIVEN and v is None)}
