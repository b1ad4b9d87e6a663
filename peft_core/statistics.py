"""Comparing methods with seeds: spread over seeds, and a paired bootstrap interval of a gain.

The gain of a method over a baseline is paired: on the same seed (so the same few-shot sample
and initialisation) and the same test examples. Its 95 % interval resamples both sources of
chance together: the seeds (which sample and initialisation we happened to draw) and the test
examples (which test set we happened to have). An interval above 0 says the method beats the
baseline beyond both; one that straddles 0 says the data cannot tell them apart.

    gain = paired_bootstrap_gain(spec.main_metric, method_predictions, adapter_predictions, labels)
    gain.mean, gain.low, gain.high
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Gain:
    mean: float  # mean over seeds of (method − baseline) on the whole test set
    low: float  # 2.5th percentile of the bootstrap distribution
    high: float  # 97.5th percentile
    seeds: int
    examples: int
    replicates: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    denominator = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(1) / denominator
    return np.where(denominator > 0, r, 0.0)  # a constant series correlates 0, as in peft_core.metrics


def _f1_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    tp = ((p == 1) & (y == 1)).sum(1)
    predicted, actual = (p == 1).sum(1), (y == 1).sum(1)
    return np.where(predicted + actual > 0, 2 * tp / np.maximum(predicted + actual, 1), 0.0)


def _matthews_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_rows(p.astype(np.float64), y.astype(np.float64))  # MCC is Pearson's r on 0/1 labels


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata  # here: `adapterflow report` imports this module, not ~0.4 s of scipy.stats

    return rankdata(x, axis=1)


ROW_METRICS = {
    "accuracy": lambda p, y: (p == y).mean(1),
    "f1": _f1_rows,
    "matthews": _matthews_rows,
    "pearson": lambda p, y: _pearson_rows(p.astype(np.float64), y.astype(np.float64)),
    "spearman": lambda p, y: _pearson_rows(_ranks(p), _ranks(y)),
}


def metric_on_resamples(metric: str, predictions: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`metric` on each row of `indices` (B, n): the predictions and labels resampled that way."""
    if metric not in ROW_METRICS:
        raise ValueError(f"no bootstrap for metric {metric!r}; supported: {', '.join(ROW_METRICS)}")
    return ROW_METRICS[metric](np.asarray(predictions)[indices], np.asarray(labels)[indices])


def _resampled_seed_means(per_seed: Callable[[np.ndarray], np.ndarray], seeds: int, n: int, replicates: int,
                          seed: int) -> np.ndarray:
    """One mean per replicate: test examples resampled (`per_seed(indices)` -> (seeds, replicates)
    values), then the seeds resampled and averaged."""
    rng = np.random.default_rng(seed)
    values = per_seed(rng.integers(0, n, size=(replicates, n)))
    drawn = rng.integers(0, seeds, size=(replicates, seeds))
    return values[drawn, np.arange(replicates)[:, None]].mean(1)


def paired_bootstrap_gain(metric: str, method: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
                          labels: Sequence[float], *, replicates: int = 2000, seed: int = 0) -> Gain:
    """The gain of `method` over `baseline` (test predictions per seed, paired by position)."""
    method, baseline, labels = np.asarray(method), np.asarray(baseline), np.asarray(labels)
    if method.shape != baseline.shape or method.ndim != 2 or method.shape[1] != labels.shape[0]:
        raise ValueError(f"need (seeds, examples) predictions of equal shape for both and {labels.shape[0]} labels, "
                         f"got {method.shape} and {baseline.shape}")
    seeds, n = method.shape

    def gains(indices: np.ndarray) -> np.ndarray:
        return np.stack([metric_on_resamples(metric, m, labels, indices) - metric_on_resamples(metric, b, labels, indices)
                         for m, b in zip(method, baseline)])

    point = float(gains(np.arange(n)[None, :]).mean())
    low, high = np.percentile(_resampled_seed_means(gains, seeds, n, replicates, seed), [2.5, 97.5])
    return Gain(point, float(low), float(high), seeds, n, replicates)


def bootstrap_interval(metric: str, predictions: Sequence[Sequence[float]], labels: Sequence[float], *,
                       replicates: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean over seeds of `metric`, resampling seeds and test examples."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)

    def values(indices: np.ndarray) -> np.ndarray:
        return np.stack([metric_on_resamples(metric, p, labels, indices) for p in predictions])

    low, high = np.percentile(_resampled_seed_means(values, *predictions.shape, replicates, seed), [2.5, 97.5])
    return float(low), float(high)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
