"""The one training loop every stage shares: AdamW, linear schedule, clipping, early stopping,
a checkpoint every epoch and resume from it, seeded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from .artifact_layout import CHECKPOINT_BEST, CHECKPOINT_CURRENT, prefixed, under
from .checkpoints import load_checkpoint, optimizer_from_files, save_checkpoint
from .configs import EvalSettings, TrainConfig
from .data.encoding import EncodedSplit, collate, make_batches
from .dropout import training_dropout
from .model import AdapterModel
from .precision import autocast
from .task_specs import TaskSpec


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    validation: dict[str, float]
    seconds: float  # the round's steps and its validation
    examples_per_second: float  # of the training steps alone


@dataclass
class FitResult:
    best_epoch: int
    best_validation: dict[str, float]
    history: list[EpochLog] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_early: bool = False

    def history_dicts(self) -> list[dict]:
        return [asdict(h) for h in self.history]


StepCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def fit_task(
    model: AdapterModel,
    spec: TaskSpec,
    train: EncodedSplit,
    validation: EncodedSplit,
    cfg: TrainConfig,
    **kwargs,
) -> FitResult:
    """Train on one task, selecting the epoch by the task's main validation metric."""
    return fit(
        model,
        cfg,
        train_batches=lambda epoch: ((spec.name, b) for b in train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch)),
        steps_per_epoch=train.num_batches(cfg.batch_size),
        validate=lambda: evaluate(model, spec, validation, cfg.evaluation),
        main_metric=spec.main_metric,
        **kwargs,
    )


def parameter_groups(model: AdapterModel, cfg: TrainConfig) -> list[dict]:
    """The optimizer's groups: every trainable parameter at `cfg.learning_rate`, or, when the heads have
    a rate of their own, the heads apart at `cfg.head_learning_rate`."""
    if cfg.head_learning_rate is None:
        return [{"params": list(model.trainable_parameters().values())}]
    body, heads = model.split_trainable()
    groups = [{"params": body}, {"params": heads, "lr": cfg.head_learning_rate}]
    return [g for g in groups if g["params"]]


def fit(
    model: AdapterModel,
    cfg: TrainConfig,
    *,
    train_batches: Callable[[int], Iterable[tuple[str, dict]]],
    steps_per_epoch: int,
    validate: Callable[[], dict[str, float]],
    main_metric: str,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_step: StepCallback | None = None,
) -> FitResult:
    """Train `model`'s trainable parameters; leaves the selected round's weights loaded.

    `train_batches(epoch)` yields (task name, batch) pairs, deterministic for a given epoch, so
    single-task and multi-task training (one task per batch) share this loop. Training runs in
    `cfg.epochs` rounds, each followed by validation and a checkpoint: a round is an epoch, or,
    with a fixed step budget (`cfg.max_steps`, the few-shot protocols), `max_steps / epochs` steps
    that may wrap over epochs; then the last round is kept instead of the best (a few-shot
    validation set is too small to select on) and nothing stops early.
    """
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    trainable = model.trainable_parameters()
    for g in optimizer.param_groups:
        g["base_lr"] = g["lr"]

    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    fixed_budget = cfg.max_steps is not None
    steps_per_round = math.ceil(cfg.max_steps / cfg.epochs) if fixed_budget else steps_per_epoch
    total_steps = steps_per_round * cfg.epochs
    warmup = math.ceil(cfg.warmup_ratio * total_steps)

    result = FitResult(best_epoch=0, best_validation={})
    best_weights = {k: p.detach().clone() for k, p in trainable.items()}
    best_score, epochs_without_gain = -math.inf, 0
    start_epoch = 0
    restored = load_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if restored is not None:
        weights, opt_tensors, state = restored
        _copy_into(trainable, under(weights, CHECKPOINT_CURRENT))
        best_weights = under(weights, CHECKPOINT_BEST)
        optimizer_from_files(optimizer, opt_tensors, state["optimizer"])
        start_epoch = result.resumed_from_epoch = state["epoch"]
        best_score, epochs_without_gain = state["best_score"], state["epochs_without_gain"]
        result.best_epoch, result.best_validation = state["best_epoch"], state["best_validation"]
        result.history = [EpochLog(**h) for h in state["history"]]
        if epochs_without_gain >= cfg.patience and not fixed_budget:
            start_epoch = cfg.epochs  # early stopping had already fired before the interruption

    device_type = accelerator.device.type
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed + epoch)  # dropout draws depend only on (seed, round): resumable
        model.train()
        started, losses, seen = time.perf_counter(), [], 0
        batches = _batch_stream(train_batches, steps_per_epoch, epoch * steps_per_round)
        for step_in_round, (task, batch) in zip(range(steps_per_round), batches):
            step = epoch * steps_per_round + step_in_round
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * _lr_factor(step, total_steps, warmup)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with autocast(cfg.precision, device_type), training_dropout(device_type):
                loss = model(batch, task).loss
            accelerator.backward(loss)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(list(trainable.values()), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            seen += batch["labels"].shape[0]
            if on_step:
                on_step(step + 1, total_steps, losses[-1])

        training_seconds = time.perf_counter() - started
        scores = validate()
        seconds = time.perf_counter() - started
        log = EpochLog(epoch + 1, sum(losses) / max(1, len(losses)), scores, seconds, seen / max(training_seconds, 1e-9))
        result.history.append(log)
        if scores[main_metric] > best_score or fixed_budget:
            best_score, epochs_without_gain = max(best_score, scores[main_metric]), 0
            result.best_epoch, result.best_validation = epoch + 1, scores
            best_weights = {k: p.detach().clone() for k, p in trainable.items()}
        else:
            epochs_without_gain += 1
        if checkpoint_dir:
            weights = prefixed(trainable, CHECKPOINT_CURRENT) | prefixed(best_weights, CHECKPOINT_BEST)
            save_checkpoint(checkpoint_dir, weights, optimizer, {
                "epoch": epoch + 1, "best_score": best_score, "epochs_without_gain": epochs_without_gain,
                "best_epoch": result.best_epoch, "best_validation": result.best_validation,
                "history": result.history_dicts(),
            })
        if on_epoch:
            on_epoch(log)
        if epochs_without_gain >= cfg.patience:
            result.stopped_early = True
            break

    _copy_into(trainable, best_weights)
    return result


def _batch_stream(train_batches: Callable[[int], Iterable[tuple[str, dict]]], steps_per_epoch: int,
                  start_step: int) -> Iterator[tuple[str, dict]]:
    """Batches from global step `start_step` on, epoch after epoch (each cut at `steps_per_epoch`)."""
    epoch, offset = divmod(start_step, steps_per_epoch)
    while True:
        for index, item in zip(range(steps_per_epoch), train_batches(epoch)):
            if index >= offset:
                yield item
        epoch, offset = epoch + 1, 0


@torch.no_grad()
def _copy_into(params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    for name, p in params.items():
        p.copy_(values[name])


@torch.no_grad()
def predict(model: AdapterModel, spec: TaskSpec, split: EncodedSplit,
            settings: EvalSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) over a split, in the split's own order."""
    model.eval()
    device = next(model.parameters()).device
    preds, labels, order = [], [], []
    for indices in make_batches(split.rows, settings.batch_size, shuffle=False, seed=0):
        batch = {k: v.to(device) for k, v in collate([split.rows[i] for i in indices], split.pad_id).items()}
        with autocast(settings.precision, device.type):
            preds.append(model.predict_batch(batch, spec.name).cpu())
        labels.append(batch["labels"].cpu())
        order.extend(indices)
    inverse = torch.argsort(torch.tensor(order))
    return torch.cat(preds)[inverse], torch.cat(labels)[inverse]


def evaluate(model: AdapterModel, spec: TaskSpec, split: EncodedSplit, settings: EvalSettings) -> dict[str, float]:
    predictions, labels = predict(model, spec, split, settings)
    return model.scored(spec, predictions.numpy(), labels.numpy())[0]
