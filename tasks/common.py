"""What every unit of work needs: its logger, progress reporting, and the signal that stops training."""

from __future__ import annotations

import logging
import threading

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import MissingContextError

from peft_core.errors import AdapterflowError
from peft_core.training import EpochLog

# Set when a run stops waiting for its units (Ctrl-C, SIGTERM, a crash of the flow): a unit in a worker
# thread cannot be cancelled from outside, so without this the process would stay until the unit ended.
STOP_TRAINING = threading.Event()


class TrainingStopped(AdapterflowError):
    """A unit's training ended early because its run was stopped; its last finished round is kept."""


def unit_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("adapterflow")


class TrainingProgress:
    """Training progress into the Prefect logs and a Prefect progress artifact (every ~10 %)."""

    def __init__(self, label: str):
        self.label = label
        self.log = unit_logger()
        self.artifact_id = None
        self._next_percent = 0
        try:
            self.artifact_id = create_progress_artifact(0.0, description=f"training {label}")
        except MissingContextError:
            pass

    def on_step(self, step: int, total: int, loss: float) -> None:
        if STOP_TRAINING.is_set():
            raise TrainingStopped(f"{self.label}: stopped at step {step} of {total} because the run was stopped; "
                                  "run it again to resume from its last finished round")
        percent = 100.0 * step / max(total, 1)
        if percent >= self._next_percent:
            self.log.info("%s: step %d/%d (%.0f%%) loss %.4f", self.label, step, total, percent, loss)
            if self.artifact_id is not None:
                update_progress_artifact(self.artifact_id, percent)
            self._next_percent = percent + 10

    def on_epoch(self, log: EpochLog) -> None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in log.validation.items())
        self.log.info("%s: epoch %d done: train loss %.4f, validation %s (%.0f ex/s)",
                      self.label, log.epoch, log.train_loss, scores, log.examples_per_second)
