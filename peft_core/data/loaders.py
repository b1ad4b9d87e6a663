"""Read a task's labelled file sets ("train", "dev") from a local folder, the HF hub or the demo generator.

Every bad input stops with a one-line `DataError` naming the file and line and how to fix it;
no row is skipped silently. Unlabelled test files are never read.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from peft_core.data.demo import generate_demo_data
from peft_core.data.types import Example
from peft_core.errors import DataError
from peft_core.task_specs import TaskSpec

Source = Literal["demo", "hub", "local"]
Record = dict[str, object]


@dataclass(frozen=True)
class LocalLayout:
    """Where a task's files are in a GLUE (`glue_data/`) or SuperGLUE download, and their columns.

    `files` maps each file set to the files pooled into it; sets in `optional` may be absent.
    `columns` renames spec fields (and "label") to the file's column names where they differ.
    `header` names the columns of headerless `.tsv` files.
    """

    folder: str
    files: dict[str, tuple[str, ...]]
    optional: frozenset[str] = frozenset()
    columns: dict[str, str] = field(default_factory=dict)
    header: tuple[str, ...] | None = None

    def column(self, spec_field: str) -> str:
        return self.columns.get(spec_field, spec_field)


_GLUE_TSV = {"train": ("train.tsv",), "dev": ("dev.tsv",)}
_SUPERGLUE_JSONL = {"train": ("train.jsonl",), "dev": ("val.jsonl",)}

LOCAL_LAYOUTS: dict[str, LocalLayout] = {
    "cola": LocalLayout("CoLA", _GLUE_TSV, header=("source", "label", "mark", "sentence")),
    "sst2": LocalLayout("SST-2", _GLUE_TSV),
    "mrpc": LocalLayout("MRPC", _GLUE_TSV, columns={
        "sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
    "stsb": LocalLayout("STS-B", _GLUE_TSV, columns={"label": "score"}),
    # ../shared/data/glue carries only QQP's train file, QNLI's dev file and MNLI's two dev files.
    "qqp": LocalLayout("QQP", _GLUE_TSV, optional=frozenset({"dev"}), columns={"label": "is_duplicate"}),
    "qnli": LocalLayout("QNLI", _GLUE_TSV, optional=frozenset({"train"})),
    "mnli": LocalLayout("MNLI", {"dev": ("dev.jsonl", "dev_mismatched.jsonl")}),
    "rte": LocalLayout("RTE", _GLUE_TSV),
    "wnli": LocalLayout("WNLI", _GLUE_TSV),
    "boolq": LocalLayout("BoolQ", _SUPERGLUE_JSONL),
    "cb": LocalLayout("CB", _SUPERGLUE_JSONL),
    "copa": LocalLayout("COPA", _SUPERGLUE_JSONL),
    "wic": LocalLayout("WiC", _SUPERGLUE_JSONL),
    "superglue_rte": LocalLayout("RTE", _SUPERGLUE_JSONL),
}

# Hugging Face split names pooled into each file set, where they are not simply train/validation.
_HUB_SPLITS = {"train": ("train",), "dev": ("validation",)}
_HUB_SPLITS_BY_TASK = {"mnli": {**_HUB_SPLITS, "dev": ("validation_matched", "validation_mismatched")}}


def load_raw(spec: TaskSpec, source: Source, path: Path | str | None = None) -> dict[str, list[Example]]:
    """The labelled file sets of a task: "train" and/or "dev" (the labelled held-out file)."""
    if source == "demo":
        return generate_demo_data(spec)
    if source == "hub":
        return _load_hub(spec)
    if source == "local":
        if path is None:
            raise DataError(f"task {spec.name}: source 'local' needs a data folder; pass path=<folder>")
        return _load_local(spec, Path(path))
    raise DataError(f"unknown data source {source!r}; use 'demo', 'hub' or 'local'")


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
    key = str(raw).strip() if isinstance(raw, (str, bool)) else raw
    if key in names:
        return names.index(key)
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        index = int(key)
        if 0 <= index < len(names):
            return index
    valid = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    raise DataError(f"{where}: label {raw!r} is not a label of task {spec.name}; use one of {valid}")


def _record_to_example(spec: TaskSpec, layout: LocalLayout | None, record: Record, where: str) -> Example:
    def value(spec_field: str) -> object:
        column = layout.column(spec_field) if layout else spec_field
        if column not in record:
            raise DataError(
                f"{where}: no column {column!r} (found: {', '.join(map(str, record))}); "
                f"task {spec.name} needs {', '.join(_expected_columns(spec, layout))}"
            )
        return record[column]

    return Example(
        texts=tuple(str(value(f)) for f in spec.text_fields),
        label=parse_label(spec, value("label"), where),
        choices=tuple(str(value(f)) for f in spec.choice_fields),
    )


def _expected_columns(spec: TaskSpec, layout: LocalLayout | None) -> list[str]:
    fields = [*spec.text_fields, *spec.choice_fields, "label"]
    return [layout.column(f) if layout else f for f in fields]


# --- local folders -------------------------------------------------------------------------------


def _load_local(spec: TaskSpec, root: Path) -> dict[str, list[Example]]:
    layout = LOCAL_LAYOUTS.get(spec.name)
    if layout is None:
        raise DataError(
            f"task {spec.name} has no known local file layout; use source 'hub' or 'demo', "
            f"or one of the tasks with a layout: {', '.join(LOCAL_LAYOUTS)}"
        )
    folder = _task_folder(root, layout)
    raw: dict[str, list[Example]] = {}
    for file_set, names in layout.files.items():
        present = [folder / n for n in names if (folder / n).is_file()]
        if not present and file_set in layout.optional:
            continue
        if len(present) != len(names):
            missing = [n for n in names if not (folder / n).is_file()]
            raise DataError(
                f"{folder}: missing {', '.join(missing)}; task {spec.name} expects "
                f"{_describe_files(layout)} in this folder"
            )
        raw[file_set] = [ex for file in present for ex in _read_file(spec, layout, file)]
    return raw


def _task_folder(root: Path, layout: LocalLayout) -> Path:
    """`<root>/<layout.folder>` (matched case-insensitively), or `root` itself if it is that folder."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass the folder that holds {layout.folder}/")
    for child in root.iterdir():
        if child.is_dir() and child.name.lower() == layout.folder.lower():
            return child
    all_files = [n for names in layout.files.values() for n in names]
    if any((root / n).is_file() for n in all_files):
        return root
    raise DataError(
        f"{root}: no {layout.folder}/ folder and none of {', '.join(all_files)}; pass the folder "
        f"that holds {layout.folder}/ or the {layout.folder} folder itself"
    )


def _describe_files(layout: LocalLayout) -> str:
    parts = []
    for file_set, names in layout.files.items():
        optional = " (optional)" if file_set in layout.optional else ""
        parts.append(f"{' + '.join(names)} as {file_set}{optional}")
    return "; ".join(parts)


def _read_file(spec: TaskSpec, layout: LocalLayout, path: Path) -> list[Example]:
    if path.suffix == ".tsv":
        records = _tsv_records(path, layout.header, _expected_columns(spec, layout))
    else:
        records = _jsonl_records(path)
    examples = [_record_to_example(spec, layout, record, f"{path}:{line}") for line, record in records]
    if not examples:
        raise DataError(f"{path}: file has no examples; restore the file from the {layout.folder} download")
    return examples


def _tsv_records(
    path: Path, fixed_header: tuple[str, ...] | None, expected: list[str]
) -> Iterator[tuple[int, Record]]:
    """Rows as dicts keyed by the header (the first line, or `fixed_header` for headerless files)."""
    # QUOTE_NONE: GLUE text fields contain unbalanced '"'. utf-8-sig: MRPC files start with a BOM.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = fixed_header or next(reader, None)
        if header is None:
            return
        missing = [c for c in expected if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: header lacks column(s) {', '.join(missing)} (found: {' | '.join(header)}; "
                f"expected: {' | '.join(expected)}); fix the header or point to the right file"
            )
        for row in reader:
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{reader.line_num}: {len(row)} tab-separated fields, expected {len(header)} "
                    f"({' | '.join(header)}); fix the row (a stray or missing tab?)"
                )
            yield reader.line_num, dict(zip(header, row))


def _jsonl_records(path: Path) -> Iterator[tuple[int, Record]]:
    with path.open(encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # a blank line (usually the last) holds no row
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_number}: not valid JSON ({e.msg}); fix or remove the line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_number}: expected a JSON object per line, got {type(record).__name__}")
            yield line_number, record


# --- Hugging Face hub ----------------------------------------------------------------------------


def _load_hub(spec: TaskSpec) -> dict[str, list[Example]]:
    if spec.hub is None:
        raise DataError(f"task {spec.name} has no Hugging Face dataset; use source 'local' or 'demo'")
    hub_path, config = spec.hub
    name = hub_path + (f" ({config})" if config else "")
    try:
        import datasets

        dataset_dict = datasets.load_dataset(hub_path, config)
    except Exception as e:  # network, auth, missing dataset: many types, one fix for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(
            f"could not load {name} from the Hugging Face hub ({type(e).__name__}: {reason}); "
            f"download the files and use source 'local' with path=<folder>"
        ) from None
    split_names = _HUB_SPLITS_BY_TASK.get(spec.name, _HUB_SPLITS)
    raw: dict[str, list[Example]] = {}
    for file_set, hub_splits in split_names.items():
        available = [s for s in hub_splits if s in dataset_dict]
        if available:
            raw[file_set] = [ex for s in available for ex in _hub_split_examples(spec, dataset_dict[s], f"{name} split {s}")]
    if not raw:
        wanted = ", ".join(s for splits in split_names.values() for s in splits)
        raise DataError(
            f"{name} has none of the splits {wanted} (found: {', '.join(dataset_dict)}); "
            "use source 'local' with path=<folder>"
        )
    return raw


def _hub_split_examples(spec: TaskSpec, split, where: str) -> list[Example]:
    """Rows of one `datasets.Dataset`; ClassLabel ints become their names before `parse_label`."""
    label_feature = split.features.get("label")
    class_names = getattr(label_feature, "names", None)
    examples = []
    for row_number, row in enumerate(split):
        if class_names is not None:
            row = {**row, "label": class_names[row["label"]] if row["label"] >= 0 else row["label"]}
        examples.append(_record_to_example(spec, None, row, f"{where} row {row_number}"))
    return examples
