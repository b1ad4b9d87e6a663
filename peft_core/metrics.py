"""Task metrics (METHODS §4), as fractions in [0, 1] (correlations in [-1, 1])."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from peft_core.task_specs import TaskSpec

# The modules that load fitted models import this one (through their training code), so sklearn.metrics
# and scipy.stats (~0.4 s to import) load when a metric is first computed: `adapterflow predict` computes none.


def _sklearn(name: str, **options) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(predictions: np.ndarray, labels: np.ndarray) -> float:
        from sklearn import metrics

        return float(getattr(metrics, name)(labels, predictions, **options))

    return metric


def _correlation(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(predictions: np.ndarray, labels: np.ndarray) -> float:
        # A correlation with a constant series is undefined (scipy returns NaN and warns). A model
        # that predicts one value explains nothing, so report 0.0 rather than let NaN reach
        # early stopping and model selection.
        if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
            return 0.0
        from scipy import stats

        return float(getattr(stats, name)(predictions, labels)[0])

    return metric


_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _sklearn("accuracy_score"),
    # Binary F1 of label 1 (the positive class: `equivalent`, `duplicate`, ...).
    "f1": _sklearn("f1_score", average="binary", pos_label=1, zero_division=0.0),
    "macro_f1": _sklearn("f1_score", average="macro", zero_division=0.0),
    # sklearn already returns 0.0 when MCC is undefined (a constant prediction or label column).
    "matthews": _sklearn("matthews_corrcoef"),
    "pearson": _correlation("pearsonr"),
    "spearman": _correlation("spearmanr"),
}


def compute_metrics(
    spec: TaskSpec, predictions: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """`spec.metrics` by name. Predictions are class indices, or floats for regression tasks."""
    dtype = np.float64 if spec.is_regression else np.int64
    predictions = np.asarray(predictions, dtype=dtype).reshape(-1)
    labels = np.asarray(labels, dtype=dtype).reshape(-1)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(
            f"{spec.name}: need as many predictions as labels, and at least one "
            f"(got {predictions.size} and {labels.size})"
        )
    return {name: _METRIC_FUNCTIONS[name](predictions, labels) for name in spec.metrics}
