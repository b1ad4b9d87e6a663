"""`adapterflow predict`: fitted units over a file of rows, answers to a file or stdout.

The answers file is written whole or not at all (renamed into place), never over the input, and
over another existing file only when the user asks (`--overwrite`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from flows.config import PipelineConfig
from peft_core.errors import ConfigError, DataError
from peft_core.inputs import read_rows
from peft_core.model_set_files import Target

PROGRESS_MIN_ROWS = 512  # shorter inputs finish before a bar would tell anyone anything
OUTPUT_SUFFIXES = {".jsonl": None, ".csv": ",", ".tsv": "\t"}


def predict_file(cfg: PipelineConfig, units: str, input_path: Path, output: Path | None, *,
                 batch_size: int | None, score: bool, console: Console, overwrite: bool = False) -> dict[str, float] | None:
    """Predict every row of `input_path` with the comma-separated `units`; returns the metrics when `score`."""
    if output is not None:
        _check_output(output, input_path, overwrite)
    references = _references(units)
    rows = read_rows(input_path)
    # MLflow, torch and transformers load only now: a bad input file is refused without them (~0.5 s, not ~9).
    # The units are found (MLflow's client and store, a download) in a second process while this one imports
    # torch and transformers; an error there (an unknown unit, a damaged file) is raised here, as it was.
    lookup = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        found = lookup.submit(find_units, cfg, references)
        from peft_core.model_set import FittedModelSet
        targets = found.result()
    finally:
        lookup.shutdown(wait=False)  # its interpreter's teardown (~0.5 s) overlaps loading the models
    models = FittedModelSet(targets)
    try:
        with _progress(len(rows), console) as advance:
            answers = models.predict(rows, batch_size=batch_size, on_batch=advance, where=str(input_path))
        metrics = _score(models, rows, answers, str(input_path)) if score else None
    finally:
        models.close()
    write_predictions(answers, output)
    return metrics


def find_units(cfg: PipelineConfig, references: list[str]) -> dict[str, Target]:
    """{target name: fitted folder or (joint folder, task)} of every unit `references` names, from the
    config's store, downloaded into its model cache and checked loadable. Imports no torch."""
    from tasks.fitted_units import resolve_unit
    from flows.store import tracking_for

    tracking = tracking_for(cfg)
    targets = {}
    for reference in references:
        targets |= resolve_unit(tracking, reference, cfg.home_dir() / "model-cache")
    return targets


def _check_output(output: Path, input_path: Path, overwrite: bool) -> None:
    """Refuse an output that is of an unknown type, the input itself, or an existing file not to be replaced."""
    if output.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"output {output}: unknown file type '{output.suffix}'; use {', '.join(OUTPUT_SUFFIXES)}")
    if not output.exists():
        return
    if output.is_dir():
        raise DataError(f"output {output} is a folder; pass a file name to --output")
    if Path(input_path).exists() and output.samefile(input_path):
        raise DataError(f"output {output} is the input file; pass another --output")
    if not overwrite:
        raise DataError(f"output {output} exists; pass --overwrite to replace it, or another --output")


def _references(units: str) -> list[str]:
    references = [reference.strip() for reference in units.split(",")]
    if not all(references):
        raise ConfigError(f"unit list {units!r} has an empty entry; join unit names with single commas, "
                          "none at either end")
    return references


def _score(models, rows: list[dict], answers: list[dict], where: str) -> dict[str, float]:
    from peft_core.inference import score_predictions

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
    """JSON lines to `output` or stdout; `.csv`/`.tsv` get one column per field, probabilities as JSON.
    A file is written aside and renamed into place: it is complete, or as it was."""
    lines = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
    if output is None:
        sys.stdout.write(lines)
        return
    tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8", newline="") as f:
            if output.suffix == ".jsonl":
                f.write(lines)
            else:
                rows = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in a.items()} for a in answers]
                pd.DataFrame(rows).to_csv(f, sep=OUTPUT_SUFFIXES[output.suffix], index=False)
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {output} ({exc.strerror}); pass another --output") from None
