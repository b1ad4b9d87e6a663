"""Loading every kind of fitted folder and predicting: the answers equal what evaluation computed."""

from __future__ import annotations

import shutil

import pytest
import torch

from peft_core.compositions import TRANSFER_METHODS
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.errors import ArtifactError, ConfigError, DataError
from peft_core.inference import bundle_fitted_model, load_fitted_model, predict, score_rows
from peft_core.model_set import FittedModelSet, save_model_set
from peft_core.model_set_files import model_set_targets
from peft_core.multitask import materialise_adapter, train_multitask
from peft_core.full_finetune import train_full_finetune
from peft_core.adapter_jobs import train_adapter
from peft_core.sites import AdapterSite
from peft_core.task_specs import get_task
from tests.helpers.predictions import assert_equals_evaluation, demo_splits, rows_of

pytestmark = pytest.mark.usefixtures("one_thread")

SENTIMENT, NLI, SIMILARITY = get_task("demo_sentiment"), get_task("demo_nli"), get_task("demo_similarity")
ADAPTER = AdapterConfig(reduction_factor=4, init_std=0.3)
FAST = TrainConfig(epochs=1, batch_size=8, eval_batch_size=8, learning_rate=1e-3, max_length=24)


@pytest.fixture(scope="module")
def fits(backbone, tmp_path_factory):
    """{name: (folder, task)} of one fitted folder of every kind, all on `backbone`."""
    root = tmp_path_factory.mktemp("fits")
    from peft_core.transfer import fit_transfer

    sources = []
    for spec in (SENTIMENT, NLI):
        train_adapter(backbone, spec, demo_splits(spec), ADAPTER, FAST, root / spec.name, with_prompt=True)
        sources.append(root / spec.name)
    found = {"prompt_adapter": (root / "demo_sentiment", None)}
    train_adapter(backbone, SIMILARITY, demo_splits(SIMILARITY), ADAPTER, FAST, root / "similarity")
    found["adapter (regression)"] = (root / "similarity", None)
    for method in TRANSFER_METHODS:
        fit_transfer(backbone, SENTIMENT, demo_splits(SENTIMENT), method, sources, FAST, root / method,
                     source_examples=[demo_splits(spec).train for spec in (SENTIMENT, NLI)])  # AdapterSoup chooses by them
        found[method] = (root / method, None)
    for method in ("hyperformer", "hyperformer_plus_plus"):
        train_multitask(backbone, [SENTIMENT, SIMILARITY], {s.name: demo_splits(s) for s in (SENTIMENT, SIMILARITY)},
                        method, ADAPTER, FAST, root / method)
        found[f"{method} (classification task)"] = (root / method, SENTIMENT.name)
        found[f"{method} (regression task)"] = (root / method, SIMILARITY.name)
    found["hyperformer_adapter"] = (materialise_adapter(root / "hyperformer", backbone, SIMILARITY.name,
                                                        root / "materialised"), None)
    return found


@pytest.fixture(scope="module")
def full_finetune_dir(tiny_backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full") / "fit"
    train_full_finetune(tiny_backbone(), SENTIMENT, demo_splits(SENTIMENT), FAST, folder)  # it changes its backbone
    return folder


def recorded_metrics(fitted, task):
    metrics = fitted.config["metrics"]
    return {k[len(task) + 1:]: v for k, v in metrics.items() if k.startswith(f"{task}_")} if task else metrics


@pytest.mark.parametrize("kind", ["prompt_adapter", "adapter (regression)", *TRANSFER_METHODS,
                                  "hyperformer (classification task)", "hyperformer (regression task)",
                                  "hyperformer_plus_plus (classification task)", "hyperformer_adapter"])
def test_every_kind_predicts_what_evaluation_computed(kind, fits, backbone):
    folder, task = fits[kind]
    fitted = load_fitted_model(folder, backbone, task=task)
    try:
        assert_equals_evaluation(fitted, recorded_metrics(fitted, task))
    finally:
        fitted.close()
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


def test_full_finetuning_predicts_what_evaluation_computed(full_finetune_dir, tiny_backbone):
    fitted = load_fitted_model(full_finetune_dir, tiny_backbone())
    try:
        assert_equals_evaluation(fitted, fitted.config["metrics"])
    finally:
        fitted.close()


def test_a_bundle_loads_after_its_sources_are_gone(fits, backbone, tmp_path):
    original = fits["scalearn"][0]
    bundle = bundle_fitted_model(original, tmp_path / "bundle")
    moved = tmp_path / "elsewhere"
    sources = [bundle / "sources" / name for name in ("demo_sentiment", "demo_nli")]
    assert all(s.is_dir() for s in sources)
    shutil.copytree(original.parent, moved)  # keep the module's fits intact for the other tests
    for name in ("demo_sentiment", "demo_nli"):
        shutil.rmtree(original.parent / name)
    try:
        fitted = load_fitted_model(bundle, backbone)
        rows = rows_of(SENTIMENT, demo_splits(SENTIMENT).test)
        answers = predict(fitted, rows)
        fitted.close()
        assert len(answers) == len(rows)
        with pytest.raises(ArtifactError, match="not a complete adapter artifact"):
            load_fitted_model(original, backbone)  # the unbundled fit still points at the removed sources
    finally:
        for name in ("demo_sentiment", "demo_nli"):
            shutil.copytree(moved / name, original.parent / name)


def test_mixed_targets_on_one_backbone_answer_as_each_alone(fits, full_finetune_dir, tiny_backbone, tmp_path):
    targets = {"scalearn": fits["scalearn"][0], "pemt": fits["pemt"][0],
               "hyper-similarity": fits["hyperformer (regression task)"], "full": full_finetune_dir}
    tasks = {"scalearn": SENTIMENT, "pemt": SENTIMENT, "hyper-similarity": SIMILARITY, "full": SENTIMENT}
    alone = {}
    for name, target in targets.items():
        folder, task = target if isinstance(target, tuple) else (target, None)
        fitted = load_fitted_model(folder, tiny_backbone(), task=task)
        alone[name] = predict(fitted, rows_of(tasks[name], demo_splits(tasks[name]).test[:5]))
        fitted.close()

    shared = tiny_backbone()
    before = [p.detach().clone() for p in shared.model.parameters()]
    models = FittedModelSet(model_set_targets(save_model_set(targets, tmp_path / "set")), shared)
    mixed = [{"model": name, **row} for name in targets for row in rows_of(tasks[name], demo_splits(tasks[name]).test[:5])]
    order = list(range(len(mixed)))
    torch.manual_seed(0)
    shuffled = [order[i] for i in torch.randperm(len(order))]
    answers = models.predict([mixed[i] for i in shuffled])
    by_row = dict(zip(shuffled, answers))
    for k, name in enumerate(targets):
        got = [by_row[k * 5 + j] for j in range(5)]
        for mine, reference in zip(got, alone[name]):
            assert mine.keys() == reference.keys() and mine.get("label") == reference.get("label")
            assert mine.get("value", 0) == pytest.approx(reference.get("value", 0), abs=1e-5)
            assert mine.get("probabilities", {}) == pytest.approx(reference.get("probabilities", {}), abs=1e-5)
    models.close()
    assert all(torch.equal(p, q) for p, q in zip(shared.model.parameters(), before))
    assert not any(isinstance(m, AdapterSite) for m in shared.model.modules())


# -- errors a user can act on ------------------------------------------------------------------
def test_another_backbone_is_one_clear_error(fits, tiny_backbone):
    with pytest.raises(ArtifactError, match=r"trained on backbone .*fingerprint .*retrain it on this backbone"):
        load_fitted_model(fits["prompt_adapter"][0], tiny_backbone(seed=1))


def test_a_joint_model_needs_its_task(fits, backbone):
    with pytest.raises(ConfigError, match="joint hyperformer model of tasks demo_sentiment, demo_similarity; pick one"):
        load_fitted_model(fits["hyperformer (regression task)"][0], backbone)


@pytest.mark.parametrize("rows, message", [
    ([{"sentence": "the film was good"}, {"text": "no field"}], r"input row 2: no value for 'sentence' \(found: text\)"),
    ([], "no rows to predict on"),
])
def test_bad_rows_name_the_row_and_field(fits, backbone, rows, message):
    fitted = load_fitted_model(fits["prompt_adapter"][0], backbone)
    try:
        with pytest.raises(DataError, match=message):
            predict(fitted, rows)
    finally:
        fitted.close()


def test_scoring_a_regression_file_without_labels_names_the_label(fits, backbone):
    fitted = load_fitted_model(fits["adapter (regression)"][0], backbone)
    try:
        with pytest.raises(DataError, match="no value for 'label'.*needs sentence1, sentence2 and label"):
            score_rows(fitted, rows_of(SIMILARITY, demo_splits(SIMILARITY).test))
    finally:
        fitted.close()


def test_a_row_for_an_unknown_target_is_named(fits, backbone):
    models = FittedModelSet({"a": fits["scalearn"][0], "b": fits["average"][0]}, backbone)
    try:
        with pytest.raises(ConfigError, match=r"input row 1 names 'c'; this model set answers: a, b"):
            models.predict([{"model": "c", "sentence": "the film was good"}])
    finally:
        models.close()
