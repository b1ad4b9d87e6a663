"""`adapterflow predict` against a real (tiny) pipeline run."""

from __future__ import annotations

import json
import shutil

import pytest

from flows.predictions import predict_file
from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE
from peft_core.inputs import input_fields
from peft_core.task_specs import get_task
from tasks.prepared_data import load_splits
from flows.store import tracking_for
from tests.helpers.pipeline import invoke as _invoke

TARGET = get_task("demo_lowres")


def _rows_file(cfg, task, folder, with_labels=True):
    """The task's prepared test split as JSON lines of input fields (and labels)."""
    spec = get_task(task)
    (data,) = [d for d in (cfg.home_dir() / "data").iterdir() if d.name.startswith(f"{task}-")]
    path = folder / f"{task}.jsonl"
    with path.open("w") as f:
        for example in load_splits(data).test:
            row = dict(zip(input_fields(spec), example.texts))
            if with_labels:
                row["label"] = example.label if spec.is_regression else spec.label_names[example.label]
            f.write(json.dumps(row) + "\n")
    return path


def _unit_run(cfg, task, method):
    tracking = tracking_for(cfg)
    runs = tracking.client().search_runs([tracking.experiment_id()], f"tags.task = '{task}' and tags.method = "
                                         f"'{method}' and tags.stage = 'transfer'", max_results=10)
    return next(r for r in runs if r.data.tags.get("reused") != "true")


def test_predictions_score_what_evaluation_recorded(fitted, tmp_path):
    path, cfg = fitted
    rows = _rows_file(cfg, TARGET.name, tmp_path)
    for method in ("scalearn", "adapter"):
        recorded = _unit_run(cfg, TARGET.name, method).data.metrics
        scores = predict_file(cfg, f"{TARGET.name}/{method}", rows, tmp_path / f"{method}.jsonl", batch_size=None,
                              score=True, console=None)
        assert scores == pytest.approx({m: recorded[f"test_{m}"] for m in TARGET.metrics}, abs=1e-9)

    code, stdout, stderr = _invoke("predict", f"{TARGET.name}/scalearn", rows, "--metrics", "--config", path)
    assert code == 0, stderr
    answers = [json.loads(line) for line in stdout.splitlines()]
    assert len(answers) == len(rows.read_text().splitlines())
    assert {a["label"] for a in answers} <= set(TARGET.label_names)
    assert stderr.strip().startswith("accuracy ")

    # The same unit named by its registered model and by its run id answers the same.
    run_id = _unit_run(cfg, TARGET.name, "scalearn").info.run_id
    for reference in ("flowtest.demo_lowres.scalearn@current", f"models:/flowtest.demo_lowres.scalearn/1", run_id):
        code, again, stderr = _invoke("predict", reference, rows, "--config", path)
        assert code == 0, stderr
        assert again == stdout


def test_rows_for_several_units_go_to_their_own_model(fitted, tmp_path):
    path, cfg = fitted
    rows = tmp_path / "mixed.csv"
    rows.write_text("model,sentence,sentence1,sentence2\n"
                    "demo_lowres/scalearn,asked about the film she called it boring,,\n"
                    "demo_similarity/adapter,,the film was good,the movie was great\n")
    code, stdout, stderr = _invoke("predict", "demo_lowres/scalearn,flowtest.sources.demo_similarity.adapter@current", rows,
                                   "--config", path, "-o", tmp_path / "out.tsv")
    assert code == 0, stderr
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["label", "score", "probabilities", "value"] and len(lines) == 3


def test_a_joint_model_predicts_each_of_its_tasks(fitted, tmp_path):
    path, cfg = fitted
    rows = _rows_file(cfg, "demo_similarity", tmp_path)
    tracking = tracking_for(cfg)
    (row_run,) = tracking.client().search_runs([tracking.experiment_id()], "tags.stage = 'multitask' and "
                                               "tags.task = 'demo_similarity'")
    scores = predict_file(cfg, "demo_similarity/hyperformer_plus_plus", rows, None, batch_size=None, score=True,
                          console=None)
    # Regression values pass through Python floats (float64), evaluation kept float32 arrays: last digits differ.
    assert scores == pytest.approx({m: row_run.data.metrics[f"test_{m}"] for m in ("pearson", "spearman")}, abs=1e-6)

    # The registered joint model answers every task, a row's `task` picking it.
    mixed = tmp_path / "tasks.jsonl"
    mixed.write_text(json.dumps({"task": "demo_sentiment", "sentence": "the film was good"}) + "\n"
                     + json.dumps({"task": "demo_similarity", "sentence1": "a film", "sentence2": "a movie"}) + "\n")
    name = "flowtest.multitask.demo_lowres-demo_sentiment-demo_similarity.hyperformer_plus_plus@current"
    code, stdout, stderr = _invoke("predict", name, mixed, "--config", path)
    assert code == 0, stderr
    first, second = (json.loads(line) for line in stdout.splitlines())
    assert first["label"] in ("negative", "positive") and isinstance(second["value"], float)


@pytest.mark.parametrize("case, expected", [
    ("unknown unit", "has no fitted unit demo_lowres/pemt; its units: "
                     "demo_lowres+demo_sentiment+demo_similarity/hyperformer_plus_plus, demo_lowres/adapter, "),
    ("unknown registered model", "no registered model 'flowtest.nope' with alias 'current'"),
    ("missing field", "row 1: no value for 'sentence' (found: text); task demo_lowres needs sentence"),
    ("empty file", "file has no rows"),
    ("regression file without labels", "no value for 'label'"),
    ("other backbone", "was trained on backbone"),
    ("damaged weights", f"{WEIGHTS_FILE} cannot be loaded (incomplete metadata, file not fully covered: damaged or "
                        "cut short)"),
    ("a trailing comma", "unit list 'demo_lowres/scalearn,' has an empty entry; join unit names with single commas"),
    ("a folder that is not there", "is a path, but no folder is there; pass the folder of a fitted unit"),
    ("a CSV that is not UTF-8", "rows.csv:2: the file is not UTF-8 text (byte 0x93); save it as UTF-8"),
])
def test_bad_input_is_one_clear_line(fitted, tmp_path, case, expected):
    path, cfg = fitted
    unit, rows, extra = f"{TARGET.name}/scalearn", tmp_path / "rows.jsonl", []
    rows.write_text(json.dumps({"sentence": "she called it boring"}) + "\n")
    if case == "unknown unit":
        unit = f"{TARGET.name}/pemt"
    elif case == "unknown registered model":
        unit = "flowtest.nope@current"
    elif case == "missing field":
        rows.write_text(json.dumps({"text": "no such field"}) + "\n")
    elif case == "empty file":
        rows.write_text("")
    elif case == "regression file without labels":
        unit, extra = "flowtest.sources.demo_similarity.adapter@current", ["--metrics"]
        rows = _rows_file(cfg, "demo_similarity", tmp_path, with_labels=False)
    elif case == "other backbone":
        unit = tmp_path / "moved"
        shutil.copytree(next((cfg.home_dir() / "artifact-cache").glob("*/adapter")), unit)
        config = json.loads((unit / CONFIG_FILE).read_text())
        config["backbone"]["fingerprint"] = "0" * 16
        (unit / CONFIG_FILE).write_text(json.dumps(config))
    elif case == "damaged weights":
        unit = tmp_path / "damaged"
        shutil.copytree(next((cfg.home_dir() / "artifact-cache").glob("*/adapter")), unit)
        weights = (unit / WEIGHTS_FILE).read_bytes()
        (unit / WEIGHTS_FILE).write_bytes(weights[:len(weights) // 2])
    elif case == "a trailing comma":
        unit = f"{TARGET.name}/scalearn,"
    elif case == "a folder that is not there":
        unit = tmp_path / "exports" / "units" / "adapter-0123" / "adapter"
    elif case == "a CSV that is not UTF-8":
        rows = tmp_path / "rows.csv"
        rows.write_bytes("sentence\n\u201cboring\u201d, she said\n".encode("cp1252"))
    code, stdout, stderr = _invoke("predict", unit, rows, "--config", path, *extra)
    assert code == 2
    assert expected in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr + stdout


def test_the_answers_never_replace_the_input_nor_an_existing_file_unless_asked(fitted, tmp_path):
    path, _ = fitted
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"sentence": "she called it boring"}) + "\n")
    before = rows.read_bytes()
    for overwrite in ([], ["--overwrite"]):
        code, stdout, stderr = _invoke("predict", f"{TARGET.name}/scalearn", rows, "-o", rows, "--config", path,
                                       *overwrite)
        assert code == 2 and stderr.count("\n") == 1 and f"output {rows} is the input file; pass another --output" \
            in stderr, stderr
        assert rows.read_bytes() == before

    answers = tmp_path / "answers.jsonl"
    answers.write_text("kept\n")
    code, _, stderr = _invoke("predict", f"{TARGET.name}/scalearn", rows, "-o", answers, "--config", path)
    assert code == 2 and f"output {answers} exists; pass --overwrite to replace it" in stderr, stderr
    assert answers.read_text() == "kept\n"
    code, _, stderr = _invoke("predict", f"{TARGET.name}/scalearn", rows, "-o", answers, "--config", path,
                              "--overwrite")
    assert code == 0, stderr
    assert json.loads(answers.read_text())["label"] in TARGET.label_names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "rows.jsonl"]  # no file left aside
