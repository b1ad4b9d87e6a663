"""The config's `tasks:` section: declared tasks, built-in tasks pointed at other files, and what the
config refuses."""

from __future__ import annotations

import json

import pytest
import yaml

from peft_core.errors import ConfigError
from flows.config import load_config
from flows.data_plans import data_recipe


def write_config(folder, **fields):
    path = folder / "conf" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"methods": ["adapter"], **fields}))
    return path


TICKETS = {"problem": "classification", "text_fields": ["body"], "label_field": "queue",
           "data": {"train": "data/t.csv"}}


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    cfg = load_config(write_config(tmp_path, tasks={"tickets": TICKETS}, sources=["tickets"], targets=[]))
    assert cfg.task_declaration("tickets").data.train == (str(tmp_path / "conf" / "data" / "t.csv"),)


def test_a_built_in_task_reads_other_files_without_being_redeclared(tmp_path):
    """The public BoolQ release as one file: split by the seeded rule, labels as the built-in names them."""
    rows = [{"question": f"q{i}", "passage": "p", "idx": i, "label": i % 2 == 0} for i in range(40)]
    (tmp_path / "conf" / "boolq").mkdir(parents=True)
    (tmp_path / "conf" / "boolq" / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(write_config(tmp_path, tasks={"boolq": {"data": {"all": "boolq/val.jsonl"}}},
                                   sources=["BoolQ"], targets=[]))
    splits = data_recipe(cfg, "boolq", "source").splits()
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (32, 4, 4)
    assert splits.spec.label_names == ("False", "True") and splits.spec.benchmark == "superglue"


@pytest.mark.parametrize(("fields", "message"), [
    ({"sources": ["tickets"]}, "field 'sources': unknown task 'tickets'; use one of: cola,"),
    ({"tasks": {"boolq": {"problem": "regression", "data": {"all": "x.jsonl"}}}, "sources": ["boolq"]},
     "tasks.boolq: 'boolq' is the built-in task boolq; only its data and a PEFT folder can be set here "
     "(tasks.boolq.data, tasks.boolq.peft_adapter; remove problem)"),
    ({"tasks": {"tickets": {"text_fields": ["body"], "data": {"train": "t.csv"}}}, "sources": ["tickets"]},
     "tasks.tickets: a declared task needs problem"),
    ({"tasks": {"tickets": {**TICKETS, "data": {"train": "t.csv", "all": "u.csv"}}}, "sources": ["tickets"]},
     "`all` is one pool for every split"),
    ({"tasks": {"tickets": {**TICKETS, "description": ""}}, "sources": ["demo_sentiment"], "targets": ["tickets"],
      "methods": ["pemt"]}, "field 'tasks.tickets.description': pemt uses each task's description as its prompt"),
])
def test_refused_with_the_field_named(tmp_path, fields, message):
    with pytest.raises(ConfigError, match="c.yaml: ") as error:
        load_config(write_config(tmp_path, **fields))
    assert message in str(error.value)
