"""`adapterflow predict`: fitted units over a file of rows, answers to a file or stdout."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from tasks.config import PipelineConfig
from peft_core.errors import ConfigError, DataError
from peft_core.inference import score_predictions
from peft_core.inputs import read_rows
from peft_core.model_set import FittedModelSet
from tasks.fitted_units import resolve_unit
from tasks.tracking import Tracking

PROGRESS_MIN_ROWS = 512  # shorter inputs finish before a bar would tell anyone anything
OUTPUT_SUFFIXES = {".jsonl": None, ".csv": ",", ".tsv": "\t"}


def predict_file(cfg: PipelineConfig, units: str, input_path: Path, output: Path | None, *,
                 batch_size: int | None, score: bool, console: Console) -> dict[str, float] | None:
    """Predict every row of `input_path` with the comma-separated `units`; returns the metrics when `score`."""
    if output is not None and output.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"output {output}: unknown file type '{output.suffix}'; use {', '.join(OUTPUT_SUFFIXES)}")
    rows = read_rows(input_path)
    tracking = Tracking.from_config(cfg)
    targets = {}
    for reference in units.split(","):
        targets |= resolve_unit(tracking, reference.strip(), cfg.home_dir() / "model-cache")
    models = FittedModelSet(targets)
    try:
        with _progress(len(rows), console) as advance:
            answers = models.predict(rows, batch_size=batch_size, on_batch=advance, where=str(input_path))
        metrics = _score(models, rows, answers, str(input_path)) if score else None
    finally:
        models.close()
    write_predictions(answers, output)
    return metrics


def _score(models: FittedModelSet, rows: list[dict], answers: list[dict], where: str) -> dict[str, float]:
    if len(models.names) > 1:
        raise ConfigError(f"--metrics scores one target, but these units answer {', '.join(models.names)}; "
                          "predict them one at a time")
    return score_predictions(models.fitted(models.names[0]).spec, rows, answers, where)


@contextmanager
def _progress(total: int, console: Console):
    if total < PROGRESS_MIN_ROWS:
        yield None
        return
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("predicting", total=total)
        yield lambda rows: progress.advance(bar, rows)


def write_predictions(answers: list[dict], output: Path | None) -> None:
    """JSON lines to `output` or stdout; `.csv`/`.tsv` get one column per field, probabilities as JSON."""
    lines = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
    if output is None:
        sys.stdout.write(lines)
        return
    try:
        if output.suffix == ".jsonl":
            output.write_text(lines)
        else:
            frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict) else v for k, v in a.items()} for a in answers])
            frame.to_csv(output, sep=OUTPUT_SUFFIXES[output.suffix], index=False)
    except OSError as exc:
        raise DataError(f"cannot write {output} ({exc.strerror}); pass another --output") from None
