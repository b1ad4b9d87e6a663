import pytest

from peft_core.errors import ConfigError, UnknownTaskError
from peft_core.task_specs import (
    METRIC_NAMES, TaskData, TaskDeclaration, TaskSpec, builtin_declarations, get_task, list_tasks,
)

GLUE = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
SUPERGLUE = {"boolq", "cb", "copa", "wic", "superglue_rte"}


def test_builtin_benchmarks_are_complete():
    assert {s.name for s in list_tasks("glue")} == GLUE
    assert {s.name for s in list_tasks("superglue")} == SUPERGLUE
    assert len(list_tasks("demo")) >= 4


@pytest.mark.parametrize(
    "query, name",
    [("SST-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"), ("MNLI", "mnli"), ("SuperGLUE-RTE", "superglue_rte"),
     ("demo-lowres", "demo_lowres")],
)
def test_get_task_accepts_case_and_punctuation_variants(query, name):
    assert get_task(query).name == name


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownTaskError, match="unknown task 'sts'.*stsb"):
        get_task("sts")


@pytest.mark.parametrize(
    "name, metrics",
    [("cola", ("matthews",)), ("mrpc", ("f1", "accuracy")), ("qqp", ("f1", "accuracy")),
     ("stsb", ("pearson", "spearman")), ("cb", ("accuracy", "macro_f1")), ("rte", ("accuracy",))],
)
def test_metrics_follow_methods_section_4(name, metrics):
    spec = get_task(name)
    assert spec.metrics == metrics
    assert spec.main_metric == metrics[0]


def test_num_labels_by_problem():
    assert get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3
    assert get_task("copa").num_labels == 2
    assert get_task("copa").choice_fields == ("choice1", "choice2")


def test_every_task_has_a_description_sentence_and_known_metrics():
    for spec in list_tasks():
        assert spec.description.endswith(".") and spec.description[0].isupper()
        assert set(spec.metrics) <= set(METRIC_NAMES)


def _spec(**overrides):
    fields = dict(name="my_task", benchmark="glue", problem="classification", text_fields=("text",),
                  label_names=("no", "yes"), metrics=("accuracy",), description="A task.")
    return TaskSpec(**{**fields, **overrides})


def test_builtin_tasks_are_declarations_with_data_of_the_official_releases():
    declarations = builtin_declarations()
    assert declarations["mrpc"].data.columns == {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"}
    assert declarations["cola"].data.header == ("source", "label", "mark", "sentence")
    assert declarations["mnli"].data.test == ("MNLI/dev_matched.tsv", "MNLI/dev_mismatched.tsv")
    assert all(d.data.origins() for d in declarations.values())


def test_a_declaration_without_label_names_resolves_with_the_names_found():
    declaration = TaskDeclaration("tickets", "classification", ("body",), TaskData(train=("t.csv",)))
    spec = declaration.resolve(("billing", "bug"))
    assert spec.label_names == ("billing", "bug") and spec.metrics == ("accuracy", "macro_f1")
    assert TaskSpec.from_json(spec.to_json()) == spec


def test_the_data_digest_covers_what_a_model_depends_on_not_the_description():
    spec = get_task("rte")
    renamed = TaskSpec.from_json({**spec.to_json(), "label_names": ["yes", "no"]})
    described = TaskSpec.from_json({**spec.to_json(), "description": "Another sentence."})
    assert renamed.identity() != spec.identity() and described.identity() == spec.identity()


@pytest.mark.parametrize(
    "overrides, message",
    [({"name": "My Task"}, "lowercase"), ({"label_names": None}, "label_names is missing"),
     ({"problem": "regression"}, "not regression"), ({"problem": "multiple_choice"}, "needs choice_fields"),
     ({"metrics": ("bleu",)}, "unknown metrics"), ({"metrics": ("pearson",)}, "do not fit"),
     ({"label_names": ("a", "b", "c"), "metrics": ("f1",)}, "macro_f1")],
)
def test_invalid_specs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _spec(**overrides)
