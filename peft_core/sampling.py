"""Multi-task batches: one task per batch, drawn by temperature sampling (METHODS §2).

`p_t ∝ (N_t / ΣN)^{1/T}`: T = 1 samples in proportion to the data, T = inf uniformly, and the
default T = 10 in between. Epoch e's draws depend only on (seed, e), so a resumed run sees the
same batches it would have seen uninterrupted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from .data.encoding import EncodedSplit
from .errors import ConfigError


def task_probabilities(sizes: Mapping[str, int], temperature: float = 10.0) -> dict[str, float]:
    """`p_t ∝ (N_t / ΣN)^{1/T}` for training-set sizes N_t."""
    if not temperature > 0:  # also rejects NaN
        raise ConfigError(f"sampling temperature must be > 0, got {temperature}; use 1 for proportional, inf for uniform")
    if not sizes:
        raise ConfigError("multi-task sampling needs at least one task")
    empty = [task for task, n in sizes.items() if n <= 0]
    if empty:
        raise ConfigError(f"task(s) {', '.join(empty)} have no training data; add examples or drop them from the task list")
    total = sum(sizes.values())
    weights = {task: (n / total) ** (1.0 / temperature) for task, n in sizes.items()}
    norm = sum(weights.values())
    return {task: w / norm for task, w in weights.items()}


class TemperatureSampler:
    def __init__(self, sizes: Mapping[str, int], temperature: float = 10.0, seed: int = 42):
        self.probabilities = task_probabilities(sizes, temperature)
        self.seed = seed

    def epoch_tasks(self, epoch: int, num_batches: int) -> list[str]:
        """The task of each of epoch `epoch`'s batches; a pure function of (seed, epoch)."""
        tasks = list(self.probabilities)
        rng = np.random.default_rng([self.seed, epoch])
        picks = rng.choice(len(tasks), size=num_batches, p=np.array(list(self.probabilities.values())))
        return [tasks[i] for i in picks]

    def batches(self, splits: Mapping[str, EncodedSplit], batch_size: int, epoch: int,
                num_batches: int) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
        """(task, batch) pairs for one epoch; a task drawn more often than it has batches starts
        another shuffled pass over its data."""
        streams: dict[str, Iterator[dict[str, torch.Tensor]]] = {}
        for task in self.epoch_tasks(epoch, num_batches):
            if task not in streams:
                streams[task] = self._task_stream(splits[task], batch_size, epoch, num_batches)
            yield task, next(streams[task])

    def _task_stream(self, split: EncodedSplit, batch_size: int, epoch: int, num_batches: int):
        # Pass p of epoch e is shuffled with key e * num_batches + p: every pass yields at least
        # one batch, so p < num_batches and the keys of different (e, p) never collide.
        for p in itertools.count():
            yield from split.batches(batch_size, shuffle=True, seed=self.seed, epoch=epoch * num_batches + p)
