"""Fitted models' predictions checked against what evaluation computed, on small demo splits."""

from __future__ import annotations

import pytest

from peft_core.configs import EvalSettings
from peft_core.data import load_task_data
from peft_core.data.encoding import EncodedSplit
from peft_core.inference import predict, score_rows
from peft_core.inputs import input_fields
from peft_core.training import predict as evaluation_predictions


def demo_splits(spec):
    """A demo task's splits, 24 training and 12 evaluation examples at most."""
    return load_task_data(spec, "demo", max_train=24, max_eval=12)


def rows_of(spec, examples, with_labels=False):
    """Examples as the rows predict takes (by input field name), with their labels if asked."""
    rows = [dict(zip(input_fields(spec), ex.texts + ex.choices)) for ex in examples]
    if with_labels:
        for row, ex in zip(rows, examples):
            row["label"] = ex.label if spec.is_regression else spec.label_names[ex.label]
    return rows


def assert_equals_evaluation(fitted, task_metrics: dict):
    """Predictions row by row equal the evaluation's, and scored they give the recorded test metrics."""
    spec = fitted.spec
    test = demo_splits(spec).test
    answers = predict(fitted, rows_of(spec, test))
    encoded = EncodedSplit.from_examples(spec, test, fitted.backbone.tokenizer, fitted.max_length)
    expected, _ = evaluation_predictions(fitted.model, spec, encoded, EvalSettings(fitted.batch_size, fitted.precision))
    if spec.is_regression:
        assert [a["value"] for a in answers] == pytest.approx(expected.tolist(), abs=1e-6)
    else:
        assert [a["label"] for a in answers] == [spec.label_names[i] for i in expected]
        assert all(sum(a["probabilities"].values()) == pytest.approx(1.0) for a in answers)
    scored = score_rows(fitted, rows_of(spec, test, with_labels=True))
    assert scored == pytest.approx({m: task_metrics[f"test_{m}"] for m in spec.metrics}, abs=1e-6)
