"""Load a declared task's labelled rows, the one way for every task: read its files (or a `datasets`
folder, a cached Hugging Face dataset, the demo generator), check every row against the
declaration, and return the spec (with the label names found in train where the declaration
leaves them open) and the examples of each split the data names.

Every bad input stops with a one-line `DataError` naming the file, row and column and how to fix
it; no row is skipped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
import pandas as pd

from peft_core.data.demo import generate_demo_data
from peft_core.data.readers import Table, dataset_table, read_table
from peft_core.data.types import Example
from peft_core.errors import DataError
from peft_core.task_specs import SPLITS, TaskDeclaration, TaskSpec

POOL = "all"  # rows not yet assigned to a split


@dataclass
class RawTask:
    """A task's spec and its labelled examples: by split, or one pool under `POOL`."""

    spec: TaskSpec
    examples: dict[str, list[Example]]


def load_raw(declaration: TaskDeclaration) -> RawTask:
    """The spec and labelled examples of a task whose data names one origin (see `declaration_for_source`)."""
    data = declaration.data
    if data.generator:
        spec = declaration.resolve()
        generated = generate_demo_data(spec)
        return RawTask(spec, {"train": generated["train"], "test": generated["dev"]})
    tables = _hub_tables(declaration) if data.hub else _file_tables(declaration)
    for table in (t for split_tables in tables.values() for t in split_tables):
        _check_columns(declaration, table)
    if data.split_column:
        _check_split_column(declaration, tables.get(POOL, []))
    spec = declaration.resolve(_label_names_found(declaration, tables))
    examples: dict[str, list[Example]] = {}
    for split, split_tables in tables.items():
        for table in split_tables:
            rows = _examples(spec, declaration.label_field, table)
            if split == POOL and data.split_column:
                for name, assigned in _assign(declaration, table, rows).items():
                    examples.setdefault(name, []).extend(assigned)
            else:
                examples.setdefault(split, []).extend(rows)
    return RawTask(spec, examples)


# --- reading -------------------------------------------------------------------------------------


def _file_tables(declaration: TaskDeclaration) -> dict[str, list[Table]]:
    data = declaration.data
    if not data.files():
        raise DataError(f"task {declaration.name} names no data; give it data.train (and optionally validation, "
                        "test), data.all, or data.hub")
    tables: dict[str, list[Table]] = {}
    for split, paths in data.files().items():
        for path in paths:
            read = read_table(Path(path), data)
            if isinstance(read, dict):  # a `datasets` DatasetDict folder: its own splits
                for name, table in _dataset_dict_splits(declaration, Path(path), read).items():
                    tables.setdefault(name, []).append(table)
                continue
            if read.frame.empty:
                raise DataError(f"{path}: the file has no rows; fill it or remove it from task {declaration.name}'s data")
            tables.setdefault(split, []).append(read)
    return tables


def _dataset_dict_splits(declaration: TaskDeclaration, path: Path, splits: dict[str, Table]) -> dict[str, Table]:
    """A DatasetDict's splits as ours: by `split_values` ({our split: its name}), else by the same names."""
    wanted = declaration.data.split_values or {name: name for name in SPLITS}
    unknown = [name for name in declaration.data.split_values.values() if name not in splits]
    if unknown:
        raise DataError(f"{path}: no split {unknown[0]!r} in this datasets folder (found: {', '.join(splits)}); "
                        f"fix task {declaration.name}'s data.split_values")
    chosen = {ours: splits[theirs] for ours, theirs in wanted.items() if theirs in splits}
    if "train" not in chosen:
        raise DataError(f"{path}: no train split in this datasets folder (found: {', '.join(splits)}); map one with "
                        f"task {declaration.name}'s data.split_values, e.g. {{train: {next(iter(splits))}}}")
    return chosen


def _hub_tables(declaration: TaskDeclaration) -> dict[str, list[Table]]:
    data = declaration.data
    name = data.hub + (f" ({data.hub_config})" if data.hub_config else "")
    try:
        import datasets

        dataset_dict = datasets.load_dataset(data.hub, data.hub_config)
    except Exception as e:  # network, auth, missing dataset: many types, one fix for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(
            f"could not load {name} from the Hugging Face cache ({type(e).__name__}: {reason}); download the "
            "files and point the task at them (data.source 'local', or the task's data.train ...)"
        ) from None
    mapping = data.hub_splits or {split: (split,) for split in SPLITS if split in dataset_dict}
    missing = [s for names in mapping.values() for s in names if s not in dataset_dict]
    if missing or "train" not in mapping:
        raise DataError(f"{name} has no split {(missing or ['train'])[0]!r} (found: {', '.join(dataset_dict)}); "
                        f"map its splits with task {declaration.name}'s data.hub_splits")
    return {split: [dataset_table(dataset_dict[s], f"{name} split {s}") for s in names]
            for split, names in mapping.items()}


# --- checking and converting rows ------------------------------------------------------------------


def _needed_columns(declaration: TaskDeclaration) -> list[str]:
    split_column = [declaration.data.split_column] if declaration.data.split_column else []
    return [*declaration.text_fields, *declaration.choice_fields, declaration.label_field, *split_column]


def _check_columns(declaration: TaskDeclaration, table: Table) -> None:
    found = [str(c) for c in table.frame.columns]
    for column in _needed_columns(declaration):
        if column not in found:
            renamed = " (after data.columns renames)" if declaration.data.columns else ""
            raise DataError(
                f"{table.path}: no column {column!r}{renamed} (found: {', '.join(found) or 'none'}); task "
                f"{declaration.name} reads {', '.join(_needed_columns(declaration))}: fix the file or the task's "
                f"{_field_naming(declaration, column)}"
            )


def _field_naming(declaration: TaskDeclaration, column: str) -> str:
    for field_name in ("label_field", "text_fields", "choice_fields"):
        value = getattr(declaration, field_name)
        if column == value or (isinstance(value, tuple) and column in value):
            return field_name
    return "data.split_column"


def _label_names_found(declaration: TaskDeclaration, tables: dict[str, list[Table]]) -> tuple[str, ...] | None:
    """The sorted label values of the training rows, where the declaration leaves `label_names` open."""
    if declaration.is_regression or declaration.label_names is not None:
        return None
    data = declaration.data
    values: set[str] = set()
    for split, split_tables in tables.items():
        for table in split_tables:
            column = table.frame[declaration.label_field]
            if split == POOL and data.split_column:
                column = column[table.frame[data.split_column].map(str) == _split_values(declaration)["train"]]
            elif split != "train" and "train" in tables:
                continue
            values |= {_label_text(v) for v in column.dropna().unique()}
    if len(values) < 2:
        raise DataError(f"task {declaration.name}: its training rows have {len(values)} label value(s) "
                        f"({', '.join(sorted(values)) or 'none'}) in column {declaration.label_field!r}; a classifier "
                        "needs at least two: fix the data, or the task's label_field")
    numeric = all(_is_int(v) for v in values)
    return tuple(sorted(values, key=lambda v: (int(v) if numeric else 0, v)))


def _label_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def parse_label(spec: TaskSpec, raw: object, where: str) -> int | float:
    """A label as written in a file or dataset -> a float (regression) or an index into label_names.

    Accepts a label name ("entailment"), its index as int or digit string ("1"), or a bool
    (SuperGLUE's BoolQ/WiC; matched to the names "False"/"True").
    """
    if spec.label_names is None:
        try:
            score = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise DataError(f"{where}: score {raw!r} is not a number; task {spec.name} needs a numeric score")
        return score
    names = spec.label_names
    key = _label_text(raw) if isinstance(raw, (str, bool, float, int)) else raw
    if key in names:
        return names.index(key)
    if isinstance(key, str) and key.isdigit():
        index = int(key)
        if 0 <= index < len(names):
            return index
    valid = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    raise DataError(f"{where}: label {raw!r} is not a label of task {spec.name}; use one of {valid} "
                    "(or fix the task's label_names)")


def _examples(spec: TaskSpec, label_field: str, table: Table) -> list[Example]:
    frame = table.frame
    texts = [_texts(frame, column, table) for column in spec.text_fields]
    choices = [_texts(frame, column, table) for column in spec.choice_fields]
    labels = _labels(spec, frame[label_field], table)
    if choices:
        return [Example(t, label, c) for t, label, c in zip(zip(*texts), labels, zip(*choices))]
    return [Example(t, label) for t, label in zip(zip(*texts), labels)]


def _texts(frame: pd.DataFrame, column: str, table: Table) -> list[str]:
    cells = frame[column]
    missing = cells.isna()
    if missing.any():
        row = int(missing.to_numpy().argmax())
        raise DataError(f"{table.place(row)}: no value in column {table.column(column)!r}; fill it in or remove the row")
    return cells.astype(str).tolist()


def _labels(spec: TaskSpec, cells: pd.Series, table: Table) -> list[int | float]:
    """Every row's label, parsed once per distinct value; the first bad one names its row."""
    missing = cells.isna()
    if missing.any():
        row = int(missing.to_numpy().argmax())
        raise DataError(f"{table.place(row)}: no label in column {table.column(cells.name)!r}; fill it in or remove the row")
    values = cells.tolist()
    parsed: dict[object, int | float] = {}
    labels = []
    for row, value in enumerate(values):
        key = (type(value), value) if isinstance(value, (bool, int, float, str)) else None
        if key is None or key not in parsed:
            label = parse_label(spec, value, f"{table.place(row)}, column {table.column(cells.name)!r}")
            if key is None:
                labels.append(label)
                continue
            parsed[key] = label
        labels.append(parsed[key])
    return labels


def _split_values(declaration: TaskDeclaration) -> dict[str, str]:
    """{split: its value in the split column}: `split_values`, else each split's own name."""
    return declaration.data.split_values or {split: split for split in SPLITS}


def _check_split_column(declaration: TaskDeclaration, tables: list[Table]) -> None:
    """Every row's split value is mapped, every mapped value occurs, and some rows are train."""
    data = declaration.data
    mapped = _split_values(declaration)
    found: set[str] = set()
    for table in tables:
        values = table.frame[data.split_column].map(str)
        unmapped = ~values.isin(list(mapped.values()))
        if unmapped.any():
            row = int(unmapped.to_numpy().argmax())
            raise DataError(f"{table.place(row)}: split column {data.split_column!r} holds {values.iloc[row]!r}, which "
                            f"data.split_values does not map (it maps {', '.join(map(repr, mapped.values()))}); add it "
                            f"to task {declaration.name}'s split_values or remove the row")
        found |= set(values.unique())
    for split, value in mapped.items():
        if value not in found and (data.split_values or split == "train"):
            raise DataError(f"task {declaration.name}: no row has {value!r} in split column {data.split_column!r}, so "
                            f"its {split} split would be empty; fix data.split_values.{split} (or leave it out to "
                            "draw that split by the seeded rule)")


def _assign(declaration: TaskDeclaration, table: Table, rows: list[Example]) -> dict[str, list[Example]]:
    """The rows of a pooled file by the value of its split column (checked by `_check_split_column`)."""
    split_of = {value: split for split, value in _split_values(declaration).items()}
    assigned: dict[str, list[Example]] = {}
    for value, example in zip(table.frame[declaration.data.split_column].map(str).tolist(), rows):
        assigned.setdefault(split_of[value], []).append(example)
    return assigned
