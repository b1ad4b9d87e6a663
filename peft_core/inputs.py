"""Rows to predict on: read a user's `.jsonl`, `.tsv` or `.csv` file and turn rows into examples.

A row is a mapping of a task's input fields (`TaskSpec.text_fields`, then `choice_fields`) to
text; a `label` is optional (needed only to score the predictions). Every bad row stops with a
one-line `DataError` naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from .data.loaders import LOCAL_LAYOUTS, _jsonl_records, _tsv_records, parse_label
from .data.types import Example
from .errors import DataError
from .task_specs import TaskSpec

SUFFIXES = (".jsonl", ".tsv", ".csv")
LABEL = "label"


def read_rows(path: Path) -> list[dict]:
    """Every row of a `.jsonl` (one JSON object a line), `.tsv` or `.csv` (a header line) file."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown file type '{path.suffix}'; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = [record for _, record in _jsonl_records(path)]
    elif path.suffix == ".tsv":
        rows = [record for _, record in _tsv_records(path, None, [])]
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path}: file has no rows; write one row per input (with a header line for .tsv/.csv)")
    return rows


def input_fields(spec: TaskSpec) -> tuple[str, ...]:
    return (*spec.text_fields, *spec.choice_fields)


def rows_to_examples(spec: TaskSpec, rows: Iterable[Mapping], where: str = "input", *,
                     with_labels: bool = False) -> list[Example]:
    """Examples of `spec` from rows; labels are parsed when `with_labels`, else set to a
    placeholder the encoder needs but nothing reads."""
    examples = []
    for number, row in enumerate(rows, start=1):
        texts = [_field(spec, row, name, f"{where} row {number}") for name in input_fields(spec)]
        if with_labels:
            label = parse_label(spec, _field(spec, row, LABEL, f"{where} row {number}"), f"{where} row {number}")
        else:
            label = 0.0 if spec.is_regression else 0
        examples.append(Example(tuple(texts[:len(spec.text_fields)]), label, tuple(texts[len(spec.text_fields):])))
    if not examples:
        raise DataError(f"{where}: no rows to predict on")
    return examples


def _field(spec: TaskSpec, row: Mapping, name: str, where: str) -> str:
    """`row[name]`, or the column a GLUE/SuperGLUE file calls it (MRPC's '#1 String')."""
    layout = LOCAL_LAYOUTS.get(spec.name)
    for key in (name, layout.column(name) if layout else name):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return value if name == LABEL else str(value)
    needed = ", ".join(input_fields(spec)) + (f" and {LABEL}" if name == LABEL else "")
    found = ", ".join(str(k) for k, v in row.items() if v is not None) or "none"
    raise DataError(f"{where}: no value for '{name}' (found: {found}); task {spec.name} needs {needed}")
