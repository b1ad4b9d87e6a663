import numpy as np
import pytest

from peft_core.metrics import _METRIC_FUNCTIONS
from peft_core.statistics import ROW_METRICS, bootstrap_interval, mean_std, metric_on_resamples, paired_bootstrap_gain


@pytest.mark.parametrize("metric", list(ROW_METRICS))
def test_resampled_metrics_equal_the_task_metrics(metric):
    rng = np.random.default_rng(0)
    regression = metric in ("pearson", "spearman")
    labels = rng.normal(size=60) if regression else rng.integers(0, 2, 60)
    predictions = labels + rng.normal(size=60) if regression else np.where(rng.random(60) < 0.7, labels, 1 - labels)
    indices = rng.integers(0, 60, size=(5, 60))
    rows = metric_on_resamples(metric, predictions, labels, indices)
    expected = [_METRIC_FUNCTIONS[metric](predictions[i], labels[i]) for i in indices]
    np.testing.assert_allclose(rows, expected, atol=1e-9)


def test_a_clearly_better_method_has_an_interval_above_zero_and_noise_does_not():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    def predictions(accuracy):
        return [np.where(rng.random(300) < accuracy, labels, 1 - labels) for _ in range(3)]
    better = paired_bootstrap_gain("accuracy", predictions(0.8), predictions(0.6), labels, replicates=500)
    assert better.significant and better.low > 0.1 and 0.15 < better.mean < 0.25
    same = paired_bootstrap_gain("accuracy", predictions(0.6), predictions(0.6), labels, replicates=500)
    assert same.low < 0 < same.high and not same.significant


def test_identical_predictions_have_a_zero_gain_and_a_zero_width_interval():
    labels = np.array([0, 1, 1, 0, 1])
    preds = [[0, 1, 0, 0, 1], [1, 1, 1, 0, 1]]
    gain = paired_bootstrap_gain("f1", preds, preds, labels, replicates=50)
    assert (gain.mean, gain.low, gain.high) == (0.0, 0.0, 0.0)


def test_seed_to_seed_spread_widens_the_interval():
    """Two seeds that disagree about the gain give a wider interval than two that agree."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    def at(accuracy):
        return np.where(rng.random(400) < accuracy, labels, 1 - labels)
    base = [at(0.6), at(0.6)]
    agree = paired_bootstrap_gain("accuracy", [at(0.7), at(0.7)], base, labels, replicates=500)
    disagree = paired_bootstrap_gain("accuracy", [at(0.9), at(0.5)], base, labels, replicates=500)
    assert disagree.high - disagree.low > agree.high - agree.low


def test_mismatched_shapes_are_refused_and_mean_std():
    with pytest.raises(ValueError, match="equal shape"):
        paired_bootstrap_gain("accuracy", [[0, 1]], [[0, 1, 1]], [0, 1])
    assert mean_std([1.0]) == (1.0, 0.0)
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))


def test_the_interval_of_a_mean_covers_it_and_narrows_with_more_examples():
    rng = np.random.default_rng(3)
    def interval(n):
        labels = rng.integers(0, 2, n)
        preds = [np.where(rng.random(n) < 0.7, labels, 1 - labels) for _ in range(3)]
        return bootstrap_interval("accuracy", preds, labels, replicates=400)
    small, large = interval(100), interval(2000)
    assert small[0] < 0.7 < small[1] and large[0] < 0.7 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
