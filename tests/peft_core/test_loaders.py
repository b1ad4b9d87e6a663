import json

import pytest

from peft_core.data import Example, declaration_for_source, load_raw
from peft_core.errors import DataError
from peft_core.task_specs import TaskData, get_task


def load(task, root, source="local"):
    """The built-in task's labelled examples by split, read from `root` as data.source 'local' does."""
    return load_raw(declaration_for_source(task, source, root)).examples


def write(path, text, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def tsv(*rows):
    return "".join("\t".join(row) + "\n" for row in rows)


def jsonl(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


RTE_HEADER = ("index", "sentence1", "sentence2", "label")


def write_rte(root, train_rows, dev_rows=(("0", "A b.", "A.", "entailment"),)):
    write(root / "RTE" / "train.tsv", tsv(RTE_HEADER, *train_rows))
    write(root / "RTE" / "dev.tsv", tsv(RTE_HEADER, *dev_rows))


def test_glue_tsv_with_header_and_stray_quotes(tmp_path):
    write_rte(tmp_path, [("0", 'He said "hi.', "He spoke.", "entailment"), ("1", "A dog.", "A cat.", "not_entailment")])
    raw = load("rte", tmp_path)
    assert raw["train"] == [
        Example(('He said "hi.', "He spoke."), 0),
        Example(("A dog.", "A cat."), 1),
    ]
    assert raw["test"] == [Example(("A b.", "A."), 0)]


def test_cola_has_no_header(tmp_path):
    rows = [("gj04", "1", "", "The sailors rode."), ("gj04", "0", "*", "Rode sailors the.")]
    write(tmp_path / "CoLA" / "train.tsv", tsv(*rows))
    write(tmp_path / "CoLA" / "dev.tsv", tsv(rows[0]))
    raw = load("CoLA", tmp_path)
    assert raw["train"] == [Example(("The sailors rode.",), 1), Example(("Rode sailors the.",), 0)]


def test_mrpc_bom_and_column_names(tmp_path):
    header = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    write(tmp_path / "MRPC" / "train.tsv", tsv(header, ("1", "7", "8", "One.", '"One.')), bom=True)
    write(tmp_path / "MRPC" / "dev.tsv", tsv(header, ("0", "9", "10", "Two.", "Three.")), bom=True)
    raw = load("mrpc", tmp_path)
    assert raw["train"] == [Example(("One.", '"One.'), 1)]
    assert raw["test"] == [Example(("Two.", "Three."), 0)]


STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score")


def stsb_row(score):
    return ("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane.", "An air plane.", score)


def test_stsb_scores_are_floats(tmp_path):
    write(tmp_path / "STS-B" / "train.tsv", tsv(STSB_HEADER, stsb_row("5.000"), stsb_row("3.8")))
    write(tmp_path / "STS-B" / "dev.tsv", tsv(STSB_HEADER, stsb_row("0")))
    raw = load("STS-B", tmp_path)
    assert [ex.label for ex in raw["train"]] == [5.0, 3.8]
    assert isinstance(raw["test"][0].label, float)


@pytest.mark.parametrize("score", ["high", "nan"])
def test_non_numeric_score_names_file_and_line(tmp_path, score):
    write(tmp_path / "STS-B" / "train.tsv", tsv(STSB_HEADER, stsb_row("1.0"), stsb_row(score)))
    write(tmp_path / "STS-B" / "dev.tsv", tsv(STSB_HEADER, stsb_row("0")))
    with pytest.raises(DataError, match=rf"STS-B/train.tsv:3, column 'score': score '{score}' is not a number"):
        load("stsb", tmp_path)


def test_a_built_in_task_pointed_at_other_files_pools_them(tmp_path):
    """MNLI as ../shared/data/glue holds it: two JSON-lines dev files, pooled for the seeded rule."""
    write(tmp_path / "MNLI" / "dev.jsonl", jsonl({"premise": "P1", "hypothesis": "H1", "label": "neutral"}))
    write(tmp_path / "MNLI" / "dev_mismatched.jsonl",
          jsonl({"premise": "P2", "hypothesis": "H2", "label": "contradiction", "pairID": "x"}) + "\n")
    files = (str(tmp_path / "MNLI" / "dev.jsonl"), str(tmp_path / "MNLI" / "dev_mismatched.jsonl"))
    pooled = declaration_for_source("mnli", "local", tmp_path).with_data(TaskData(all=files))
    assert load_raw(pooled).examples == {"all": [Example(("P1", "H1"), 1), Example(("P2", "H2"), 2)]}


@pytest.mark.parametrize(
    "task, folder, record, expected",
    [
        ("boolq", "BoolQ", {"question": "is it?", "passage": "It is.", "idx": 0, "label": True},
         Example(("is it?", "It is."), 1)),
        ("cb", "CB", {"premise": "P", "hypothesis": "H", "label": "neutral"}, Example(("P", "H"), 2)),
        ("copa", "COPA", {"premise": "P", "choice1": "A", "choice2": "B", "question": "cause", "label": 1},
         Example(("P", "cause"), 1, ("A", "B"))),
        ("wic", "WiC", {"word": "bank", "sentence1": "S1", "sentence2": "S2", "label": False},
         Example(("bank", "S1", "S2"), 0)),
        ("superglue_rte", "RTE", {"premise": "P", "hypothesis": "H", "label": "not_entailment"},
         Example(("P", "H"), 1)),
    ],
)
def test_superglue_jsonl(tmp_path, task, folder, record, expected):
    write(tmp_path / folder / "train.jsonl", jsonl(record))
    write(tmp_path / folder / "val.jsonl", jsonl(record))
    assert load(task, tmp_path) == {"train": [expected], "test": [expected]}


def test_missing_data_folder_names_the_file_it_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"nowhere/RTE/train.tsv does not exist"):
        load("rte", tmp_path / "nowhere")


def test_missing_column_names_found_and_expected_header(tmp_path):
    write(tmp_path / "RTE" / "train.tsv", tsv(("index", "sentence1", "sentence2", "gold"), ("0", "x", "y", "entailment")))
    write(tmp_path / "RTE" / "dev.tsv", tsv(RTE_HEADER, ("0", "x", "y", "entailment")))
    with pytest.raises(DataError, match=r"train.tsv: no column 'label' \(found: index, sentence1, sentence2, gold\); "
                                        r"task rte reads sentence1, sentence2, label: fix the file or the task's label_field"):
        load("rte", tmp_path)


def test_short_row_names_file_and_line(tmp_path):
    write_rte(tmp_path, [("0", "x", "y", "entailment"), ("1", "x", "entailment")])
    with pytest.raises(DataError, match=r"RTE/train.tsv:3: 3 tab-separated fields, expected 4"):
        load("rte", tmp_path)


def test_bad_label_lists_valid_labels(tmp_path):
    write_rte(tmp_path, [("0", "x", "y", "entailment"), ("1", "x", "y", "maybe")])
    with pytest.raises(DataError, match=r"train.tsv:3, column 'label': label 'maybe' is not a label of task rte; "
                                        r"use one of 0=entailment, 1=not_entailment"):
        load("rte", tmp_path)


def test_out_of_range_label_index(tmp_path):
    write(tmp_path / "CB" / "train.jsonl", jsonl({"premise": "P", "hypothesis": "H", "label": 3}))
    write(tmp_path / "CB" / "val.jsonl", jsonl({"premise": "P", "hypothesis": "H", "label": 0}))
    with pytest.raises(DataError, match=r"CB/train.jsonl:1, column 'label': label 3 is not a label of task cb"):
        load("cb", tmp_path)


@pytest.mark.parametrize("content, message", [("", "the file is empty"), (tsv(RTE_HEADER), "the file has no rows")])
def test_empty_file(tmp_path, content, message):
    write(tmp_path / "RTE" / "train.tsv", content)
    write(tmp_path / "RTE" / "dev.tsv", tsv(RTE_HEADER, ("0", "x", "y", "entailment")))
    with pytest.raises(DataError, match=rf"train.tsv: {message}"):
        load("rte", tmp_path)


def test_jsonl_missing_field_and_bad_json(tmp_path):
    write(tmp_path / "CB" / "val.jsonl", jsonl({"premise": "P", "hypothesis": "H", "label": 0}))
    write(tmp_path / "CB" / "train.jsonl", jsonl({"premise": "P", "label": "neutral"}))
    with pytest.raises(DataError, match=r"train.jsonl: no column 'hypothesis' \(found: premise, label\)"):
        load("cb", tmp_path)
    write(tmp_path / "CB" / "train.jsonl", "{not json\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: not valid JSON"):
        load("cb", tmp_path)


def test_local_source_needs_a_path():
    with pytest.raises(DataError, match="needs a data folder"):
        declaration_for_source("rte", "local")


def test_demo_source_for_a_real_task_is_refused():
    with pytest.raises(DataError, match="task rte has no demo data; use data.source 'local' or 'hub'"):
        declaration_for_source("rte", "demo")


def test_hub_errors_become_one_line_data_errors(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load nyu-mll/glue \(rte\) .*ConnectionError.*source 'local'") as error:
        load("rte", None, "hub")
    assert "\n" not in str(error.value)


def test_hub_rows_map_class_label_names(monkeypatch):
    import datasets

    features = datasets.Features({
        "premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
    })
    rows = {"premise": ["P"], "hypothesis": ["H"], "label": [2]}
    fake = datasets.DatasetDict({
        split: datasets.Dataset.from_dict(rows, features=features)
        for split in ("train", "validation_matched", "validation_mismatched", "test_matched")
    })
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: fake)
    assert load("mnli", None, "hub") == {"train": [Example(("P", "H"), 2)], "test": [Example(("P", "H"), 2)] * 2}


DEMO_TASKS = ["demo_sentiment", "demo_nli", "demo_similarity", "demo_lowres"]


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_demo_suite_is_deterministic_and_uses_every_label(task):
    spec = get_task(task)
    raw = load(task, None, "demo")
    assert raw == load(task, None, "demo")
    for split in ("train", "test"):
        labels = [ex.label for ex in raw[split]]
        assert all(len(ex.texts) == len(spec.text_fields) for ex in raw[split])
        if spec.is_regression:
            assert 0.0 <= min(labels) and max(labels) <= 5.0 and len(set(labels)) > 10
        else:
            assert set(labels) == set(range(spec.num_labels))


def test_demo_sizes():
    from peft_core.data.demo import DEMO_SIZES

    for task in DEMO_TASKS:
        raw = load(task, None, "demo")
        assert (len(raw["train"]), len(raw["test"])) == DEMO_SIZES[task]
    assert DEMO_SIZES["demo_lowres"][0] < 100 <= min(DEMO_SIZES[t][0] for t in DEMO_TASKS[:3])
