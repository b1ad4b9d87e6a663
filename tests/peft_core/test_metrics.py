import math

import pytest

from peft_core.metrics import _METRIC_FUNCTIONS, compute_metrics
from peft_core.task_specs import METRIC_NAMES, get_task


def test_every_metric_name_has_a_function():
    assert set(_METRIC_FUNCTIONS) == set(METRIC_NAMES)


def test_accuracy():
    assert compute_metrics(get_task("rte"), [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75}


def test_binary_f1_of_label_one_and_accuracy():
    # tp = 2, fp = 1, fn = 1 -> precision 2/3, recall 2/3, F1 2/3; 3 of 5 right.
    result = compute_metrics(get_task("mrpc"), [1, 1, 1, 0, 0], [1, 1, 0, 1, 0])
    assert result == pytest.approx({"f1": 2 / 3, "accuracy": 0.6})
    assert list(result) == ["f1", "accuracy"]


def test_matthews():
    # tp = 2, tn = 1, fp = 1, fn = 0: (2*1 - 1*0) / sqrt(3 * 2 * 2 * 1) = 2 / sqrt(12)
    result = compute_metrics(get_task("cola"), [1, 1, 1, 0], [1, 1, 0, 0])
    assert result["matthews"] == pytest.approx(2 / math.sqrt(12))


def test_macro_f1():
    # per class F1: class 0: 1.0, class 1: 2/3 (p=1, r=1/2), class 2: 0.8 (p=2/3, r=1)
    result = compute_metrics(get_task("cb"), [0, 1, 2, 2, 2], [0, 1, 1, 2, 2])
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.8) / 3)


def test_pearson_and_spearman():
    result = compute_metrics(get_task("stsb"), [1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 6.0, 7.0])
    assert result["spearman"] == pytest.approx(1.0)
    x, y = [1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 6.0, 7.0]
    mx, my = sum(x) / 4, sum(y) / 4
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    expected = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert result["pearson"] == pytest.approx(expected)


def test_constant_predictions_give_zero_not_nan():
    assert compute_metrics(get_task("stsb"), [2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}
    assert compute_metrics(get_task("cola"), [1, 1, 1], [0, 1, 1]) == {"matthews": 0.0}
    assert compute_metrics(get_task("mrpc"), [0, 0, 0], [0, 1, 1])["f1"] == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="as many predictions as labels"):
        compute_metrics(get_task("rte"), [0, 1], [0])
