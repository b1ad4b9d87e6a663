"""What a HyperFormer few-shot fit starts from and trains (its `transfer.options`), outside
`hyperformer/` so that a config validates them without torch.

    options = FewShotOptions.from_options({"init_from": {"rte": "mnli", "mrpc": "qqp", "default": "mean"}})
    options.for_target("rte")  # FewShotOptions(init_from="mnli", train_hypernetwork=True)

The defaults follow the paper's procedure (METHODS §2a): the new task embedding starts from a
related trained task's embedding, named per target, and the model is then fine-tuned on the k
examples, the hypernetwork and the LayerNorms it was trained with included
(`train_hypernetwork: true`). `train_hypernetwork: false` trains the embedding and the head alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ConfigError

MEAN = "mean"  # init_from: the mean of the source task embeddings
DEFAULT = "default"  # init_from as a mapping: the entry of every target not named in it
INIT_FROM_FIX = (f"give a task of the joint model or '{MEAN}', or one per target, e.g. "
                 f"{{rte: mnli, mrpc: qqp, {DEFAULT}: {MEAN}}}")


@dataclass(frozen=True)
class FewShotOptions:
    """What a few-shot fit starts from and trains (the method's YAML options)."""

    # a task of the joint model or "mean", for every target; or {target: task, "default": task} (unnamed
    # targets without a "default" entry start from the mean)
    init_from: str | dict[str, str] = MEAN
    train_hypernetwork: bool = True  # also the hypernetwork and the backbone LayerNorms (the paper's fine-tuning)

    def __post_init__(self) -> None:
        named = self.init_from.values() if isinstance(self.init_from, dict) else [self.init_from]
        if not named or not all(isinstance(v, str) and v for v in named) or (
                isinstance(self.init_from, dict) and not all(isinstance(k, str) and k for k in self.init_from)):
            raise ConfigError(f"init_from must be a source task's name or '{MEAN}', not {self.init_from!r}; "
                              f"{INIT_FROM_FIX}")
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

    def init_from_for(self, target: str) -> str:
        """The task (or "mean") whose embedding `target`'s new embedding starts from."""
        if isinstance(self.init_from, str):
            return self.init_from
        return self.init_from.get(target, self.init_from.get(DEFAULT, MEAN))

    def named_tasks(self) -> list[str]:
        """Every task `init_from` names (not "mean"), to check against the joint model's tasks."""
        named = self.init_from.values() if isinstance(self.init_from, dict) else [self.init_from]
        return list(dict.fromkeys(t for t in named if t != MEAN))

    def named_targets(self) -> list[str]:
        """The targets a per-target `init_from` names (its keys less "default")."""
        return [t for t in self.init_from if t != DEFAULT] if isinstance(self.init_from, dict) else []

    def for_target(self, target: str) -> FewShotOptions:
        """These options as one fit on `target` runs them: `init_from` resolved to one task (or "mean")."""
        return dataclasses.replace(self, init_from=self.init_from_for(target))

    def trained(self) -> list[str]:
        """The parts of the target model that train, as recorded in its artifact."""
        return ["task_embedding", "head"] + (["hypernetwork", "backbone_layernorms"] if self.train_hypernetwork else [])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FEW_SHOT_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FewShotOptions))
