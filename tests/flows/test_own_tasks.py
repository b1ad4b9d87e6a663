"""A user's own tasks end to end: configs/own-tasks.yaml through the pipeline on a tiny model, its
fitted target predicting from the artifact alone, and every bad declaration or file refused by the
real CLI with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from flows.predictions import predict_file
from flows.stages import run_stage
from peft_core.inference import load_fitted_model, predict
from flows.config import load_config
from tasks.reporting import comparison_table
from flows.store import tracking_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "own-tasks.yaml"
TINY_TRAINING = {"epochs": 1, "batch_size": 8, "max_length": 24, "learning_rate": 0.001}


def test_the_example_config_runs_every_kind_of_fit_and_predicts_without_the_config(prefect_api, tmp_path, tiny_backbone_dir,
                                                                         monkeypatch):
    cfg = load_config(EXAMPLE, **{
        "backbone": str(tiny_backbone_dir), "home": str(tmp_path / "home"), "sources": ["review_score", "tickets"],
        "methods": ["adapter", "scalearn", "pemt", "hyperformer_plus_plus_few_shot"], "data.max_train": 48,
        "data.max_eval": 24, "training.multitask": TINY_TRAINING,
        "training.sources": TINY_TRAINING, "training.targets": {**TINY_TRAINING, "max_steps": 4}})
    parent_id = run_stage(cfg, None)
    tracking = tracking_for(cfg)
    table = comparison_table(tracking, parent_id)
    fits = table[(table["stage"] == "transfer") & (table["task"] == "tickets")]
    assert set(fits["method"]) == {"adapter", "scalearn", "pemt", "hyperformer_plus_plus_few_shot"}
    assert set(fits["main_metric"]) == {"accuracy"}
    assert {"test_accuracy", "test_macro_f1"} <= set(table.columns)
    assert table.loc[table["task"] == "review_score", "test_pearson"].notna().all()

    # the registered model's signature has the declared columns; its artifact predicts on its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    model = mlflow.models.get_model_info("models:/own-tasks.tickets.scalearn@current")
    assert [c.name for c in model.signature.inputs.inputs] == ["subject", "body"]
    run_id = fits.loc[fits["method"] == "scalearn", "artifact_run_id"].iloc[0]
    folder = tracking.client().download_artifacts(run_id, "adapter", str(tmp_path / "fit"))
    answers = predict(load_fitted_model(folder), [{"subject": "the app crashes", "body": "it fails every time"}])
    assert answers[0]["label"] in {"billing", "bug", "question"}
    # predict --metrics scores a file that keeps its labels in the task's own column (queue)
    scores = predict_file(cfg, "tickets/scalearn", EXAMPLE.parent / "data" / "tickets" / "test.csv",
                          tmp_path / "answers.jsonl", batch_size=None, score=True, console=None)
    assert set(scores) == {"accuracy", "macro_f1"} and 0 <= scores["accuracy"] <= 1


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ADAPTERFLOW_HOME", "ADAPTERFLOW_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120, env={**env, "PYTHONUNBUFFERED": "1"})


def ticket_rows(labels=("bug", "billing", "question") * 4) -> str:
    return "subject,body,queue\n" + "".join(f"s{i},b{i},{q}\n" for i, q in enumerate(labels))


def declared(**task) -> dict:
    base = {"problem": "classification", "text_fields": ["subject", "body"], "label_field": "queue",
            "description": "Route a ticket.", "data": {"train": "train.csv"}}
    return {k: v for k, v in {**base, **task}.items() if v is not None}


# (the task's declaration, the train file, the start of what the error line must say)
CASES = {
    "unknown key": (declared(lable_names=["a"]), ticket_rows(), "field 'tasks.tickets.lable_names': unknown key"),
    "misspelt column": (declared(label_field="queu"), ticket_rows(),
                        "train.csv: no column 'queu' (found: subject, body, queue)"),
    "label outside label_names": (declared(label_names=["billing", "bug"]), ticket_rows(),
                                  "train.csv:4, column 'queue': label 'question' is not a label of task tickets"),
    "non-numeric score": (declared(problem="regression", metrics=None), ticket_rows(),
                          "train.csv:2, column 'queue': score 'bug' is not a number"),
    "empty split": (declared(data={"train": "train.csv", "test": "test.csv"}), ticket_rows(),
                    "test.csv: the file has no rows"),
    "split value never occurs": (
        declared(label_names=["billing", "bug", "question"],
                 data={"all": "train.csv", "split_column": "subject", "split_values": {"train": "s0"}}),
        ticket_rows(), "train.csv:3: split column 'subject' holds 's1', which data.split_values does not map"),
    "unsupported file type": (declared(data={"train": "train.xlsx"}), ticket_rows(), "unsupported file type '.xlsx'"),
    "clash with a built-in": (None, ticket_rows(), "'sst_2' is the built-in task sst2; only its data and a PEFT folder can be set"),
    "multiple choice without choices": (declared(problem="multiple_choice"), ticket_rows(),
                                        "tasks.tickets: a multiple_choice task needs choice_fields (the columns of its choices, like COPA's "
                                        "[choice1, choice2])"),
    "one label in train": (declared(), ticket_rows(("bug",) * 9), "1 label value(s) (bug) in column 'queue'"),
    "missing file": (declared(data={"train": "nope.csv"}), ticket_rows(), "nope.csv does not exist"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_declaration_or_file_ends_the_command_with_one_line(tmp_path, case):
    task, rows, expected = CASES[case]
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "train.xlsx").write_text("not a spreadsheet")
    (tmp_path / "test.csv").write_text("subject,body,queue\n")
    tasks = {"sst_2": declared()} if task is None else {"tickets": task}
    config = {"name": "mine", "home": str(tmp_path / "home"), "tasks": tasks, "sources": ["demo_sentiment"],
              "targets": [next(iter(tasks))] if task is not None else ["demo_lowres"], "methods": ["adapter"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = run_cli(tmp_path, "tasks", "c.yaml", "--check")
    last = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stdout, done.stdout
    assert last.startswith("error: ") and expected in last, done.stdout
    assert done.stdout.count(expected) == 1, done.stdout
