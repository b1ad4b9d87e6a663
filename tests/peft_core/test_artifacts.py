"""Adapter artifacts end to end: train_adapter writes a safetensors + JSON folder that reloads to the
same model, re-evaluates to the same metrics, and refuses the wrong backbone or placement."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from peft_core import adapter_jobs
from peft_core.artifact_files import check_artifact_files
from peft_core.artifacts import CONFIG_FILE, WEIGHTS_FILE, load_artifact, read_artifact_config, save_artifact
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.data.encoding import EncodedSplit, collate
from peft_core.errors import ArtifactError
from peft_core.prompts import description_embeddings
from peft_core.sites import AdapterSite
from peft_core.task_specs import get_task

from tests.helpers.core import FAMILIES, sentiment_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = get_task("demo_sentiment")
ADAPTER = AdapterConfig(reduction_factor=4)
TRAIN = TrainConfig(epochs=2, batch_size=8, eval_batch_size=16, max_length=16, learning_rate=1e-2, seed=7)
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt"}


def validation_batch(backbone, splits):
    encoded = EncodedSplit.from_examples(SPEC, splits.validation, backbone.tokenizer, TRAIN.max_length)
    return collate(encoded.rows, encoded.pad_id)


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    return model(batch, SPEC.name).logits


def train_and_capture(backbone, splits, output_dir, *, with_prompt=False, placement="pfeiffer"):
    """Run adapter_jobs.train_adapter; return (result, logits of the trained model just before it was saved)."""
    batch = validation_batch(backbone, splits)
    captured = {}
    original = adapter_jobs.adapter_tensors

    def capturing(model, task):
        captured["logits"] = logits_of(model, batch)
        captured["prompt"] = None if model.prompt is None else model.prompt.embeddings.detach().clone()
        return original(model, task)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapter_jobs, "adapter_tensors", capturing)
        result = adapter_jobs.train_adapter(backbone, SPEC, splits, AdapterConfig(placement=placement, reduction_factor=4),
                                       TRAIN, output_dir, with_prompt=with_prompt)
    assert "logits" in captured, "train_adapter no longer saves through adapter_tensors; update this test"
    return result, captured, batch


def assert_no_sites(backbone):
    assert not any(isinstance(m, AdapterSite) for m in backbone.model.modules())


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    backbone = tiny_backbone("bert")
    splits = sentiment_splits(n_train=32, n_eval=16)
    root = tmp_path_factory.mktemp("artifacts")
    result, captured, batch = train_and_capture(backbone, splits, root / "adapter")
    return {"backbone": backbone, "splits": splits, "root": root, "dir": root / "adapter", "result": result,
            "logits": captured["logits"], "batch": batch}


@pytest.fixture(scope="module")
def trained_with_prompt(tiny_backbone, tmp_path_factory):
    backbone = tiny_backbone("bert")
    splits = sentiment_splits(n_train=32, n_eval=16)
    root = tmp_path_factory.mktemp("prompt_artifacts")
    result, captured, batch = train_and_capture(backbone, splits, root / "adapter", with_prompt=True)
    return {"backbone": backbone, "splits": splits, "root": root, "dir": root / "adapter", "result": result,
            "logits": captured["logits"], "prompt": captured["prompt"], "batch": batch}


def test_train_adapter_writes_config_and_safetensors(trained):
    folder, backbone, result = trained["dir"], trained["backbone"], trained["result"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    assert result.artifact_dir == folder
    assert len(result.history) == TRAIN.epochs
    assert set(result.metrics) == {"validation_accuracy", "test_accuracy"}
    assert_no_sites(backbone)  # train_adapter detaches its sites

    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["method"] == "adapter"
    assert config["adapter"] == ADAPTER.to_dict()
    assert config["backbone"]["name"] == "tiny-bert"
    assert config["backbone"]["fingerprint"] == backbone.fingerprint
    assert config["task"]["name"] == SPEC.name and config["task"]["label_names"] == list(SPEC.label_names)
    assert config["data_digest"] == trained["splits"].digest()
    assert config["metrics"] == result.metrics
    assert config["training"]["max_length"] == 16

    tensors = load_file(folder / WEIGHTS_FILE)
    m = 32 // ADAPTER.reduction_factor
    for layer in range(backbone.num_layers):
        assert tensors[f"sites.{layer}.ffn.down_weight"].shape == (32, m)
        assert tensors[f"sites.{layer}.ffn.up_weight"].shape == (m, 32)
    assert tensors["head.linear.weight"].shape == (SPEC.num_labels, 32)
    assert "prompt.embeddings" not in tensors
    assert not any(k.startswith(("encoder.", "embeddings.")) for k in tensors)  # no backbone weights


def test_no_pickle_files_are_written(trained):
    files = [p for p in trained["root"].rglob("*") if p.is_file()]
    assert {p.name for p in files} == {CONFIG_FILE, WEIGHTS_FILE}  # and no leftover .tmp-/.old- folders
    assert [p.name for p in trained["root"].iterdir()] == ["adapter"]
    for path in files:
        assert path.suffix not in PICKLE_SUFFIXES
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{path} looks like a pickle / torch.save file"


def test_a_damaged_weights_file_is_named_before_anything_loads_it(tmp_path):
    fit, source = tmp_path / "fit", tmp_path / "fit" / "sources" / "sst2"
    save_artifact(fit, {"omega": torch.zeros(4)}, {"method": "scalearn"})
    save_artifact(source, {"down": torch.ones(4, 2)}, {"method": "adapter"})
    assert set(check_artifact_files(fit)) == {fit, source}  # the bundled source adapters too
    weights = source / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1])
    with pytest.raises(ArtifactError, match=f"{weights} cannot be loaded .*: damaged or cut short"):
        check_artifact_files(fit)


def test_loaded_model_gives_identical_logits(trained):
    backbone = trained["backbone"]
    model = adapter_jobs.load_adapter_model(trained["dir"], backbone, SPEC)
    try:
        assert torch.equal(logits_of(model, trained["batch"]), trained["logits"])
    finally:
        model.detach()
    assert_no_sites(backbone)


def test_untrained_model_gives_different_logits(trained):
    """Guards the identity test above: a fresh adapter + head does not give the trained logits."""
    backbone = trained["backbone"]
    torch.manual_seed(123)
    model = adapter_jobs.build_adapter_model(backbone, SPEC, ADAPTER)
    try:
        assert not torch.allclose(logits_of(model, trained["batch"]), trained["logits"], atol=1e-3)
    finally:
        model.detach()


def test_evaluate_adapter_reproduces_metrics(trained):
    metrics = adapter_jobs.evaluate_adapter(trained["dir"], trained["backbone"], SPEC, trained["splits"],
                                       max_length=TRAIN.max_length, batch_size=TRAIN.eval_batch_size)
    assert metrics == trained["result"].metrics
    assert_no_sites(trained["backbone"])


def test_other_backbone_raises_artifact_error_naming_both(trained, tiny_backbone):
    other = tiny_backbone("bert", seed=1, name="tiny-bert-other")
    assert other.fingerprint != trained["backbone"].fingerprint
    with pytest.raises(ArtifactError) as info:
        adapter_jobs.load_adapter_model(trained["dir"], other, SPEC)
    message = str(info.value)
    assert "'tiny-bert'" in message and "'tiny-bert-other'" in message
    assert trained["backbone"].fingerprint in message and other.fingerprint in message
    assert "\n" not in message
    assert_no_sites(other)
    with pytest.raises(ArtifactError):
        adapter_jobs.evaluate_adapter(trained["dir"], other, SPEC, trained["splits"], max_length=16)


def test_other_architecture_raises_artifact_error(trained, tiny_backbone):
    other = tiny_backbone("distilbert")
    with pytest.raises(ArtifactError, match="tiny-distilbert"):
        adapter_jobs.load_adapter_model(trained["dir"], other, SPEC)


def test_wrong_placement_raises_artifact_error(trained):
    backbone = trained["backbone"]
    config, tensors = load_artifact(trained["dir"], backbone, placement="pfeiffer")
    assert config["adapter"]["placement"] == "pfeiffer" and tensors
    with pytest.raises(ArtifactError, match="'pfeiffer'.*'houlsby'"):
        load_artifact(trained["dir"], backbone, placement="houlsby")


@pytest.mark.parametrize("missing", [WEIGHTS_FILE, CONFIG_FILE])
def test_incomplete_folder_raises_artifact_error(trained, tmp_path, missing):
    folder = tmp_path / "adapter"
    shutil.copytree(trained["dir"], folder)
    (folder / missing).unlink()
    with pytest.raises(ArtifactError, match="not a complete adapter artifact"):
        adapter_jobs.load_adapter_model(folder, trained["backbone"], SPEC)
    with pytest.raises(ArtifactError):
        adapter_jobs.evaluate_adapter(folder, trained["backbone"], SPEC, trained["splits"], max_length=16)
    assert_no_sites(trained["backbone"])


def test_missing_folder_and_bad_json_raise_artifact_error(trained, tmp_path):
    with pytest.raises(ArtifactError):
        read_artifact_config(tmp_path / "nowhere")
    folder = tmp_path / "adapter"
    shutil.copytree(trained["dir"], folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        adapter_jobs.load_adapter_model(folder, trained["backbone"], SPEC)


def test_an_artifact_of_another_format_is_refused_naming_the_folder_and_the_fix(trained, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(trained["dir"], folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "format_version": 2}))
    with pytest.raises(ArtifactError, match=rf"{folder} is in artifact format 2 .*reads format 1; re-run the stage"):
        adapter_jobs.load_adapter_model(folder, trained["backbone"], SPEC)
    assert_no_sites(trained["backbone"])


def test_prompt_variant_round_trips_prompt_embeddings(trained_with_prompt):
    t = trained_with_prompt
    backbone, folder = t["backbone"], t["dir"]
    tensors = load_file(folder / WEIGHTS_FILE)
    assert torch.equal(tensors["prompt.embeddings"], t["prompt"])
    initial = description_embeddings(backbone, SPEC.description)
    assert tensors["prompt.embeddings"].shape == initial.shape
    assert not torch.equal(tensors["prompt.embeddings"], initial)  # the prompt trained
    assert json.loads((folder / CONFIG_FILE).read_text())["method"] == "prompt_adapter"

    model = adapter_jobs.load_adapter_model(folder, backbone, SPEC)
    try:
        assert model.prompt is not None
        assert torch.equal(model.prompt.embeddings.detach(), t["prompt"])
        assert torch.equal(logits_of(model, t["batch"]), t["logits"])
    finally:
        model.detach()
    metrics = adapter_jobs.evaluate_adapter(folder, backbone, SPEC, t["splits"], max_length=TRAIN.max_length,
                                       batch_size=TRAIN.eval_batch_size)
    assert metrics == t["result"].metrics
    assert {p.name for p in t["root"].rglob("*") if p.is_file()} == {CONFIG_FILE, WEIGHTS_FILE}


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_on_every_family(tiny_backbone, tmp_path, family):
    backbone = tiny_backbone(family)
    splits = sentiment_splits(n_train=16, n_eval=8)
    result, captured, batch = train_and_capture(backbone, splits, tmp_path / "adapter", placement="houlsby")
    assert read_artifact_config(tmp_path / "adapter")["backbone"]["model_type"] == backbone.model.config.model_type
    model = adapter_jobs.load_adapter_model(tmp_path / "adapter", backbone, SPEC)
    try:
        assert model.placement == "houlsby" and len(model.sites) == 2 * backbone.num_layers
        assert torch.equal(logits_of(model, batch), captured["logits"])
    finally:
        model.detach()
    assert_no_sites(backbone)
