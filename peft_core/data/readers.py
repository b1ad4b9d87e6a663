"""Read one data file (or a `datasets` folder) into a table of cells, with pandas, pyarrow and
`datasets`, and name any row's place in it for error messages.

Every cell is read as text (a label is parsed later, against the task), so '007' stays '007' and
an empty cell stays ''. Bad files stop with a one-line `DataError` naming the file and, where the
reader can tell, the line, and how to fix it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from peft_core.errors import DataError
from peft_core.task_specs import TaskData

FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DATASETS_FOLDER = "a folder written by datasets' save_to_disk"


@dataclass
class Table:
    """A file's rows (columns renamed to the task's fields) and `place(i)`: where row i is."""

    frame: pd.DataFrame
    path: Path
    place: Callable[[int], str]
    file_names: dict[str, str] = field(default_factory=dict)  # {task field: the file's column} of renamed columns

    def column(self, name: str) -> str:
        """The file's own name of the column the task reads as `name`, for messages."""
        return self.file_names.get(name, name)


def read_table(path: Path, data: TaskData) -> Table | dict[str, Table]:
    """The rows of `path`; a `datasets` folder holding several splits gives {split name: rows}."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; fix the path in the task's data (paths of a declared "
                        "task are relative to the config file, of a built-in task to the data folder)")
    if path.is_dir():
        return _read_datasets_folder(path, data)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = _read_delimited(path, data, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl":
        table = _read_json_lines(path)
    elif suffix == ".json":
        table = _read_json(path)
    elif suffix == ".parquet":
        table = _read_parquet(path)
    else:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; use one of {', '.join(FILE_TYPES)} "
                        f"or {DATASETS_FOLDER}")
    return _renamed(table, data)


def _renamed(table: Table, data: TaskData) -> Table:
    if data.columns:
        table.frame = table.frame.rename(columns=data.columns)
        table.file_names = {new: old for old, new in data.columns.items()}
    return table


def _read_delimited(path: Path, data: TaskData, sep: str) -> Table:
    """A .csv/.tsv with pyarrow (multi-threaded): every cell as text, every row the header's width."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    quote = '"' if data.quoting else False
    try:
        header = list(data.header) if data.header else _header_line(path, sep, data.quoting)
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=0 if data.header else 1),
            parse_options=pa_csv.ParseOptions(delimiter=sep, quote_char=quote, newlines_in_values=data.quoting),
            convert_options=pa_csv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            raise DataError(_not_utf8(path)) from None
        raise DataError(_ragged_row(path, sep, data, header)) from None
    first_line = 1 if data.header else 2
    return Table(table.to_pandas(), path, lambda i: f"{path}:{i + first_line}")


def _header_line(path: Path, sep: str, quoting: bool) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f, delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE), None)
    if not header:
        raise DataError(f"{path}: the file is empty; write a header line and one row per example")
    return header


def _ragged_row(path: Path, sep: str, data: TaskData, header: list[str]) -> str:
    """The message for the first row whose number of fields differs from the header's."""
    kind = "tab-separated" if sep == "\t" else "comma-separated"
    separator = "tab" if sep == "\t" else "comma"  # in words: Prefect's logs quote messages with repr()
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep, quoting=csv.QUOTE_MINIMAL if data.quoting else csv.QUOTE_NONE)
        if not data.header:
            next(reader, None)
        for row in reader:
            if len(row) != len(header):
                return (f"{path}:{reader.line_num}: {len(row)} {kind} fields, expected {len(header)} "
                        f"({' | '.join(header)}); fix the row (a stray or missing {separator}"
                        f"{', or an unclosed quote: set the task data.quoting: false if quotes are plain text' if data.quoting else ''})")
    return f"{path}: cannot be read as {kind} values; check its separators and quotes"


def _not_utf8(path: Path) -> str:
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (f"{path}:{number}: the file is not UTF-8 text (byte 0x{line[exc.start]:02x}); save it as "
                        "UTF-8 (e.g. from a spreadsheet: 'CSV UTF-8')")
    return f"{path}: the file is not UTF-8 text; save it as UTF-8"


def _read_json_lines(path: Path) -> Table:
    records, lines = [], []
    try:
        with path.open(encoding="utf-8-sig") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue  # a blank line (usually the last) holds no row
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove the line") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
                records.append(record)
                lines.append(number)
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None
    return Table(pd.DataFrame.from_records(records), path, lambda i: f"{path}:{lines[i]}")


def _read_json(path: Path) -> Table:
    try:
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); a .json file holds one array of "
                        "objects (one object per line is .jsonl)") from None
    if not isinstance(content, list) or not all(isinstance(r, dict) for r in content):
        raise DataError(f"{path}: expected a JSON array of objects, one per example (one object per line is .jsonl)")
    return Table(pd.DataFrame.from_records(content), path, lambda i: f"{path} row {i + 1}")


def _read_parquet(path: Path) -> Table:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file; one fix for the user
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); re-export it") from None
    return Table(frame, path, lambda i: f"{path} row {i + 1}")


def _read_datasets_folder(path: Path, data: TaskData) -> Table | dict[str, Table]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(f"{path} is a folder but not {DATASETS_FOLDER}; point the task at a file "
                        f"({', '.join(FILE_TYPES)}) or at such a folder") from None
    if isinstance(loaded, datasets.DatasetDict):
        return {name: _renamed(dataset_table(split, path / name), data)
                for name, split in loaded.items()}
    return _renamed(dataset_table(loaded, path), data)


def dataset_table(dataset, where: Path | str) -> Table:
    """A `datasets.Dataset` as a table; class-label columns hold their names, -1 (no label) stays -1."""
    frame = dataset.to_pandas()
    for column, feature in dataset.features.items():
        names = getattr(feature, "names", None)
        if names is not None:
            frame[column] = [names[v] if 0 <= v < len(names) else v for v in frame[column].tolist()]
    return Table(frame, Path(str(where)), lambda i: f"{where} row {i + 1}")


def content_digest(paths: list[str]) -> str:
    """A digest of the bytes of `paths` (files, or every file under a folder), in order."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            h.update(str(file.relative_to(path) if path.is_dir() else "").encode() + b"\0")
            try:
                with file.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
            except FileNotFoundError:
                h.update(b"missing")  # the loader names the missing file
    return h.hexdigest()
