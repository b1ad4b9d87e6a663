"""What a HyperFormer few-shot fit starts from and trains (its `transfer.options`), outside
`hyperformer/` so that a config validates them without torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ConfigError

MEAN = "mean"  # init_from: the mean of the source task embeddings


@dataclass(frozen=True)
class FewShotOptions:
    """What a few-shot fit starts from and trains (the method's YAML options)."""

    init_from: str = MEAN  # a task of the joint model, or "mean"
    train_hypernetwork: bool = False  # also the hypernetwork and the backbone LayerNorms

    def __post_init__(self) -> None:
        if not isinstance(self.init_from, str) or not self.init_from:
            raise ConfigError(f"init_from must be a source task's name or '{MEAN}', not {self.init_from!r}")
        if not isinstance(self.train_hypernetwork, bool):
            raise ConfigError(f"train_hypernetwork must be true or false, not {self.train_hypernetwork!r}")

    @classmethod
    def from_options(cls, options: dict | None) -> FewShotOptions:
        options = dict(options or {})
        unknown = sorted(set(options) - set(FEW_SHOT_OPTIONS))
        if unknown:
            raise ConfigError(f"HyperFormer few-shot transfer has no option(s) {unknown}; its options: "
                              f"{', '.join(FEW_SHOT_OPTIONS)}")
        return cls(**options)

    def trained(self) -> list[str]:
        """The parts of the target model that train, as recorded in its artifact."""
        return ["task_embedding", "head"] + (["hypernetwork", "backbone_layernorms"] if self.train_hypernetwork else [])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FEW_SHOT_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FewShotOptions))
