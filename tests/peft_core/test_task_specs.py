import pytest

from peft_core import task_specs
from peft_core.errors import ConfigError, UnknownTaskError
from peft_core.task_specs import METRIC_NAMES, TaskSpec, get_task, list_tasks, register_task

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


def test_register_task_makes_it_findable_and_refuses_clashes(monkeypatch):
    monkeypatch.setattr(task_specs, "_REGISTRY", dict(task_specs._REGISTRY))
    spec = register_task(_spec(name="user_task"))
    assert get_task("User-Task") is spec
    with pytest.raises(ConfigError, match="clashes"):
        register_task(_spec(name="user_task", description="Another task."))
    register_task(_spec(name="user_task", description="Another task."), replace=True)
    assert get_task("user_task").description == "Another task."


@pytest.mark.parametrize(
    "overrides, message",
    [({"name": "My Task"}, "lowercase"), ({"label_names": None}, "regression"),
     ({"metrics": ("bleu",)}, "unknown metrics"), ({"metrics": ("pearson",)}, "do not fit"),
     ({"label_names": ("a", "b", "c"), "metrics": ("f1",)}, "macro_f1")],
)
def test_invalid_specs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _spec(**overrides)
