"""Rows to predict on: read a user's data file (.csv .tsv .jsonl .json .parquet) and turn rows into examples.

A row is a mapping of a task's input fields (`TaskSpec.text_fields`, then `choice_fields`) to
text; the label (in the task's `label_field`, or `label`) is optional (needed only to score the predictions). Every bad row stops with a
one-line `DataError` naming the file, the row and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from .data.loaders import parse_label
from .data.readers import FILE_TYPES, read_table
from .data.types import Example
from .errors import DataError
from .task_specs import TaskData, TaskSpec, builtin_declarations

LABEL = "label"


def read_rows(path: Path) -> list[dict]:
    """Every row of a data file (.csv, .tsv, .jsonl, .json, .parquet) as {column: value}; a .tsv is read
    with quotes as plain text, as GLUE's dev files need."""
    path = Path(path)
    if path.suffix.lower() not in FILE_TYPES:
        raise DataError(f"{path}: unknown file type '{path.suffix}'; use one of {', '.join(FILE_TYPES)}")
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    table = read_table(path, TaskData(quoting=path.suffix.lower() != ".tsv"))
    if table.frame.empty:
        raise DataError(f"{path}: file has no rows; write one row per input (with a header line for .tsv/.csv)")
    return table.frame.to_dict(orient="records")


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
            label = parse_label(spec, _field(spec, row, spec.label_field, f"{where} row {number}", label=True),
                                f"{where} row {number}")
        else:
            label = 0.0 if spec.is_regression else 0
        examples.append(Example(tuple(texts[:len(spec.text_fields)]), label, tuple(texts[len(spec.text_fields):])))
    if not examples:
        raise DataError(f"{where}: no rows to predict on")
    return examples


def _field(spec: TaskSpec, row: Mapping, name: str, where: str, label: bool = False) -> str:
    """`row[name]`, or the column a built-in task's official file calls it (MRPC's '#1 String'); a
    label may also be in a column named `label`."""
    builtin = builtin_declarations().get(spec.name)
    file_names = [c for c, f in builtin.data.columns.items() if f == name] if builtin and builtin.benchmark == spec.benchmark else []
    for key in dict.fromkeys((name, *file_names, *([LABEL] if label else []))):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return value if label else str(value)
    needed = ", ".join(input_fields(spec)) + (f" and {name}" if label else "")
    found = ", ".join(str(k) for k, v in row.items() if v is not None) or "none"
    raise DataError(f"{where}: no value for '{name}' (found: {found}); task {spec.name} needs {needed}")
