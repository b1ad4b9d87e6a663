"""A source brought in as a Hugging Face PEFT LoRA folder (issue 24.3): `tasks.<task>.peft_adapter` imports
it in the sources stage instead of training it, every fit combines it beside a trained LoRA source, a
rerun finds the import by key, and a config it cannot run with is refused when it loads."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertModel

from flows.config import load_config
from flows.peft_sources import PEFT_FILES
from flows.stages import run_stage
from flows.store import tracking_for
from flows.unit_plans import imported_source
from peft_core.artifacts import read_artifact_config
from peft_core.errors import ConfigError
from peft_core.peft_folder import PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE
from peft_core.task_specs import get_task
from tasks.reporting import comparison_table, to_markdown

LORA = {"kind": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_targets": ["query", "value"]}
REVIEWS = {"problem": "classification", "text_fields": ["sentence"], "label_names": ["negative", "positive"],
           "description": "Say whether a review is positive.", "peft_adapter": "peft"}


@pytest.fixture
def peft_folder(tmp_path, tiny_backbone_dir):
    """A PEFT LoRA folder saved by PEFT itself on the tiny backbone, its lora_B non-zero."""
    torch.manual_seed(0)
    model = get_peft_model(BertModel.from_pretrained(tiny_backbone_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    model.save_pretrained(tmp_path / "peft")
    return tmp_path / "peft"


def test_an_imported_source_is_combined_by_every_fit_and_reused(prefect_api, tiny_config, peft_folder):
    path = tiny_config(tasks={"reviews": REVIEWS}, sources=["reviews", "demo_nli"], adapter=LORA,
                       methods=["adapter", "scalearn", "average"])[0]
    cfg = load_config(path)
    parent_id = run_stage(cfg, None)
    tracking = tracking_for(cfg)
    table = comparison_table(tracking, parent_id)
    fits = table[table["stage"] == "transfer"]
    assert set(fits["method"]) == {"adapter", "scalearn", "average"} and fits["test_accuracy"].notna().all()
    imported = table[table["task"] == "reviews"]
    assert list(imported["method"]) == ["peft_lora"] and imported["test_accuracy"].isna().all()
    artifact = cfg.home_dir() / "artifact-cache" / imported["artifact_run_id"].iloc[0] / "adapter"
    assert read_artifact_config(artifact)["imported_from"]["folder"] == str(peft_folder.resolve())
    assert "imported" in to_markdown(table)
    assert not list((cfg.home_dir() / "data").glob("reviews-*"))  # a declared task imported without data

    # the transfer stage alone finds the import by its key (not imported again) and reuses every fit over it
    rerun = run_stage(cfg, "transfer")
    assert all(unit.reused for unit in rerun) and len(rerun) == len(fits)

    # the key follows the folder's content: a changed folder is imported again
    before = imported_source(cfg, "reviews", {"source": {}}).key
    (peft_folder / PEFT_WEIGHTS_FILE).write_bytes((peft_folder / PEFT_WEIGHTS_FILE).read_bytes() + b" ")
    assert imported_source(cfg, "reviews", {"source": {}}).key != before


@pytest.mark.parametrize("changes, refusal", [
    ({"methods": ["adapter", "pemt"]}, "field 'methods': pemt needs a task prompt on every source"),
    ({"adapter": {"reduction_factor": 4}}, "field 'adapter.kind': source reviews is a PEFT LoRA"),
    ({"targets": ["reviews"]}, "field 'tasks.reviews.peft_adapter': reviews is a target"),
    ({"methods": ["adaptersoup"]}, "field 'tasks.reviews.data': adaptersoup reads every source's training examples"),
    ({"tasks": {"reviews": {**REVIEWS, "peft_adapter": "elsewhere"}}}, "field 'tasks.reviews.peft_adapter': folder"),
    ({"tasks": {"reviews": {**REVIEWS, "label_names": None}}}, "field 'tasks.reviews.label_names'"),
])
def test_a_config_an_imported_source_cannot_run_with_is_refused_in_one_line(tiny_config, tmp_path, changes, refusal):
    (tmp_path / "peft").mkdir()
    for name in PEFT_FILES:
        (tmp_path / "peft" / name).write_text("{}")
    settings = {"tasks": {"reviews": REVIEWS}, "sources": ["reviews", "demo_nli"], "adapter": LORA}
    with pytest.raises(ConfigError, match=refusal) as refused:
        load_config(tiny_config(**{**settings, **changes})[0])
    assert "\n" not in str(refused.value)
    assert load_config(tiny_config(**settings, methods=["adaptersoup"],
                                   transfer={"options": {"adaptersoup": {"select": "all"}}})[0])
    (tmp_path / "peft" / PEFT_CONFIG_FILE).unlink()
    with pytest.raises(ConfigError, match=f"peft_adapter': .* has no {PEFT_CONFIG_FILE}"):
        load_config(tiny_config(**settings)[0])
    assert PEFT_FILES == (PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE)


def test_a_built_in_task_imported_as_a_source_keeps_its_spec_and_its_data_only_where_read(tiny_config, peft_folder):
    settings = {"tasks": {"demo_sentiment": {"peft_adapter": "peft"}}, "sources": ["demo_sentiment", "demo_nli"],
                "adapter": LORA}
    cfg = load_config(tiny_config(**settings, methods=["adapter", "scalearn"])[0])
    assert cfg.imported_sources() == ["demo_sentiment"] and "demo_sentiment" not in cfg.data_tasks()
    unit = imported_source(cfg, "demo_sentiment", {"source": {}})
    assert unit.spec == get_task("demo_sentiment").to_json() and unit.folder == str(peft_folder)
    with_soup = load_config(tiny_config(**settings, methods=["adapter", "adaptersoup"])[0])
    assert "demo_sentiment" in with_soup.data_tasks()  # AdapterSoup's similarity reads every source's examples
