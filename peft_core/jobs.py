"""The skeleton every training job runs, and the pieces the jobs share.

    with job_model(train, lambda: build_adapter_model(backbone, spec, adapter)) as model:
        data = encode_splits(spec, splits, backbone, train.max_length)
        run = fit_single_task(model, spec, data, train)  # metered fit, final scores, parameter counts
        save_artifact(output_dir, adapter_tensors(model, spec.name), artifact_config(...))
    return run.result(output_dir)

`job_model` seeds right before the build, so that the new modules' initialisation depends on the
seed alone; what a job does before that (loading sources, encoding) stays in the job, in its order.
torch has one random state per process, and the pipeline's threads runner trains units in parallel
threads: a job holds that state from its seeding to its end, so that it draws the same numbers
(initialisation, dropout) as when it runs alone, and results do not depend on the runner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from .backbones import Backbone
from .configs import EvalSettings, TrainConfig
from .data.encoding import EncodedSplit
from .data.types import DatasetSplits
from .model import AdapterModel
from .resources import ResourceMeter
from .task_specs import TaskSpec
from .training import FitResult, evaluate, fit_task, predict

Model = TypeVar("Model", bound=AdapterModel)


@dataclass
class TrainingResult:
    """What a job reports. `trainable_params` counts the parameters it trained *excluding* task heads
    (`head_params` counts those): a method's cost beside the heads every method trains alike. Both are
    logged as MLflow metrics under these names, which reports read."""

    metrics: dict[str, float]  # "validation_<metric>" and "test_<metric>"
    history: list[dict]
    best_epoch: int
    wall_time_s: float
    peak_memory_mb: float
    trainable_params: int
    head_params: int
    artifact_dir: Path | None = None
    extra: dict = field(default_factory=dict)
    # {"test": {"predictions": [...], "labels": [...]}}: what paired comparisons of methods resample
    predictions: dict | None = None


@dataclass
class EncodedTaskData:
    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit | None


def encode_splits(spec: TaskSpec, splits: DatasetSplits, backbone: Backbone, max_length: int) -> EncodedTaskData:
    def enc(examples):
        return EncodedSplit.from_examples(spec, examples, backbone.tokenizer, max_length) if examples else None

    return EncodedTaskData(enc(splits.train), enc(splits.validation), enc(splits.test))


def final_evaluation(model: AdapterModel, spec: TaskSpec, data: EncodedTaskData,
                     settings: EvalSettings) -> tuple[dict[str, float], dict | None]:
    """Validation (and test, when the task has one) metrics of the model as it is now, and its
    test predictions with their labels (None without a test set)."""
    metrics = {f"validation_{k}": v for k, v in evaluate(model, spec, data.validation, settings).items()}
    if data.test is None:
        return metrics, None
    predictions, labels = predict(model, spec, data.test, settings)
    scores, scored = model.scored(spec, predictions.numpy(), labels.numpy())
    metrics |= {f"test_{k}": v for k, v in scores.items()}
    return metrics, {"test": {"predictions": scored.tolist(), "labels": labels.tolist()}}


def final_metrics(model: AdapterModel, spec: TaskSpec, data: EncodedTaskData, settings: EvalSettings) -> dict[str, float]:
    return final_evaluation(model, spec, data, settings)[0]


_RANDOM_STATE = threading.RLock()  # held by a job from its seeding to its end (see the module's docstring)


@contextmanager
def job_model(train: TrainConfig, build: Callable[[], Model]) -> Iterator[Model]:
    """Seed, build the model, and on every exit detach it: the shared backbone is handed back as it
    was loaded (`AdapterModel.detach`)."""
    with _RANDOM_STATE:
        torch.manual_seed(train.seed)
        model = build()
        try:
            yield model
        finally:
            model.detach()


@dataclass
class FittedRun:
    """What a fit produced: the selection, its cost, the final scores and the trainable parameters."""

    fit: FitResult
    seconds: float
    peak_memory_mb: float
    metrics: dict[str, float]
    predictions: dict | None
    parameters: dict[str, int]  # AdapterModel.count_parameters() of the fitted model

    def result(self, artifact_dir: Path | None, extra: dict | None = None) -> TrainingResult:
        return TrainingResult(self.metrics, self.fit.history_dicts(), self.fit.best_epoch, self.seconds,
                              self.peak_memory_mb, self.parameters["excluding_heads"], self.parameters["heads"],
                              Path(artifact_dir) if artifact_dir else None, extra or {}, self.predictions)


def fit_and_evaluate(model: AdapterModel, fit: Callable[[], FitResult],
                     evaluate: Callable[[], tuple[dict[str, float], dict | None]]) -> FittedRun:
    """Run `fit` under a ResourceMeter, then `evaluate` (metrics, predictions), then count parameters."""
    with ResourceMeter() as meter:
        fitted = fit()
    metrics, predictions = evaluate()
    return FittedRun(fitted, meter.seconds, meter.peak_memory_mb, metrics, predictions, model.count_parameters())


def fit_single_task(model: AdapterModel, spec: TaskSpec, data: EncodedTaskData, train: TrainConfig, *,
                    before_evaluation: Callable[[AdapterModel], None] | None = None, **fit_options) -> FittedRun:
    """`fit_task` on `data` (`fit_options`: checkpoint_dir, on_epoch, on_step), then `final_evaluation`."""
    def evaluate_fitted():
        if before_evaluation is not None:
            before_evaluation(model)
        return final_evaluation(model, spec, data, train.evaluation)

    return fit_and_evaluate(model, lambda: fit_task(model, spec, data.train, data.validation, train, **fit_options),
                            evaluate_fitted)
