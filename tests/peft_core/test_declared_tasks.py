"""Tasks a user declares: every file type, split rules, label names found in train, and one clear
error per bad declaration or row."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from peft_core.data import load_raw, load_task_data
from peft_core.errors import ConfigError, DataError
from peft_core.task_specs import TaskData, TaskDeclaration

ROWS = [{"subject": f"s{i}", "body": f"b{i}", "queue": q} for i, q in enumerate(["bug", "billing", "question"] * 10)]


def tickets(tmp_path, rows=ROWS, suffix=".csv", **fields) -> TaskDeclaration:
    """A ticket-routing task whose train rows are `rows`, written as a `suffix` file."""
    path = tmp_path / f"train{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:  # a datasets folder
        import datasets

        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    data = fields.pop("data", {})
    return TaskDeclaration(**{"name": "tickets", "problem": "classification", "text_fields": ("subject", "body"),
                              "label_field": "queue", "data": TaskData(train=(str(path),), **data), **fields})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet", ""])
def test_every_file_type_reads_the_same_rows_with_label_names_found_in_train(tmp_path, suffix):
    raw = load_raw(tickets(tmp_path, suffix=suffix))
    assert raw.spec.label_names == ("billing", "bug", "question")
    assert raw.spec.metrics == ("accuracy", "macro_f1")
    assert [ex.texts for ex in raw.examples["train"][:2]] == [("s0", "b0"), ("s1", "b1")]
    assert [ex.label for ex in raw.examples["train"][:3]] == [1, 0, 2]


def test_a_train_file_alone_is_split_by_the_seeded_rule(tmp_path):
    splits = load_task_data(tickets(tmp_path))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (24, 3, 3)
    assert splits.digest() == load_task_data(tickets(tmp_path)).digest()


def test_numeric_label_values_sort_as_numbers(tmp_path):
    rows = [{"subject": "s", "body": "b", "queue": q} for q in (10, 2, 1) * 4]
    assert load_raw(tickets(tmp_path, rows, suffix=".jsonl")).spec.label_names == ("1", "2", "10")


def reviews(tmp_path, split_values=None, parts=("train", "dev", "test")) -> TaskDeclaration:
    rows = [{"review": f"r{i}", "stars": i % 5 + 1, "part": parts[i % len(parts)]} for i in range(30)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = TaskData(all=(str(path),), split_column="part",
                    split_values=split_values or {"train": "train", "validation": "dev", "test": "test"})
    return TaskDeclaration("review_score", "regression", ("review",), data, label_field="stars")


def test_one_file_split_by_a_column(tmp_path):
    splits = load_task_data(reviews(tmp_path))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (10, 10, 10)
    assert splits.validation[0].texts == ("r1",) and splits.validation[0].label == 2.0


def test_a_split_value_that_never_occurs_is_named(tmp_path):
    with pytest.raises(DataError, match=r"no row has 'valid' in split column 'part'.*split_values.validation"):
        load_raw(reviews(tmp_path, {"train": "train", "validation": "valid", "test": "test"}, parts=("train", "test")))


def test_a_split_column_value_without_a_split_names_the_row(tmp_path):
    with pytest.raises(DataError, match=r"reviews.jsonl:3: split column 'part' holds 'extra', which"):
        load_raw(reviews(tmp_path, parts=("train", "dev", "extra")))


def test_editing_the_label_names_changes_the_digest_and_the_description_does_not(tmp_path):
    base = load_task_data(tickets(tmp_path, label_names=("billing", "bug", "question"))).digest()
    renamed = load_task_data(tickets(tmp_path, label_names=("bug", "billing", "question"))).digest()
    described = load_task_data(tickets(tmp_path, description="Route a ticket.")).digest()
    assert renamed != base and described == base


@pytest.mark.parametrize(("rows", "fields", "message"), [
    ([*ROWS, {"subject": "s", "body": "b", "queue": "sales"}], {"label_names": ("billing", "bug", "question")},
     r"train.csv:32, column 'queue': label 'sales' is not a label of task tickets; use one of 0=billing"),
    ([{"subject": "s", "queue": "bug"}] * 3, {}, r"train.csv: no column 'body' \(found: subject, queue\)"),
    ([{"subject": "s", "body": "b", "queue": "bug"}] * 9, {}, r"1 label value\(s\) \(bug\) in column 'queue'"),
])
def test_bad_rows_are_named(tmp_path, rows, fields, message):
    with pytest.raises(DataError, match=message):
        load_raw(tickets(tmp_path, rows, **fields))


def test_a_regression_label_that_is_not_a_number_names_the_row(tmp_path):
    rows = [{"review": "r", "stars": s} for s in ("1", "2", "three")]
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    declaration = TaskDeclaration("review_score", "regression", ("review",), TaskData(train=(str(path),)),
                                  label_field="stars")
    with pytest.raises(DataError, match=r"r.csv:4, column 'stars': score 'three' is not a number"):
        load_raw(declaration)


def test_a_file_type_we_do_not_read_is_named(tmp_path):
    (tmp_path / "train.xlsx").write_bytes(b"PK")
    declaration = TaskDeclaration("tickets", "classification", ("body",), TaskData(train=(str(tmp_path / "train.xlsx"),)))
    with pytest.raises(DataError, match=r"train.xlsx: unsupported file type '.xlsx'; use one of .csv, .tsv"):
        load_raw(declaration)


def test_a_multiple_choice_task_needs_choice_fields():
    with pytest.raises(ConfigError, match="needs choice_fields"):
        TaskDeclaration("pick", "multiple_choice", ("premise",), TaskData(train=("x.csv",)))
