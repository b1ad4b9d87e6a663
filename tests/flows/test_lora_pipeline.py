"""LoRA sources through the pipeline (issue 24.2): `adapter: {kind: lora}` trains LoRA source and target
adapters, every transfer method asked for combines them, the fits predict from their files alone with
the scores they were logged with, `adapterflow export-peft` writes one as a PEFT folder, and methods that generate bottleneck adapters are refused at load."""

from __future__ import annotations

import pytest

from flows.config import load_config
from flows.stages import run_stage
from flows.store import tracking_for
from peft_core.artifacts import read_artifact_config
from peft_core.errors import ConfigError
from peft_core.inference import load_fitted_model, score_rows
from peft_core.inputs import input_fields
from tasks.prepared_data import load_splits
from tasks.reporting import comparison_table
from tests.helpers.pipeline import invoke

LORA = {"kind": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_targets": ["query", "value", "ffn_out"]}
METHODS = ["adapter", "scalearn", "average", "adaptersoup"]


def test_lora_sources_train_every_method_combines_them_and_a_fit_exports_to_peft(prefect_api, tiny_config, tmp_path):
    config_path = tiny_config(adapter=LORA, methods=METHODS)[0]
    cfg = load_config(config_path)
    parent_id = run_stage(cfg, None)
    tracking = tracking_for(cfg)
    table = comparison_table(tracking, parent_id)
    fits = table[table["stage"] == "transfer"]
    assert set(fits["method"]) == set(METHODS) and fits["test_accuracy"].notna().all()
    cache = cfg.home_dir() / "artifact-cache"
    for run_id in table[table["stage"] == "sources"]["artifact_run_id"]:
        assert read_artifact_config(cache / run_id / "adapter")["adapter"]["kind"] == "lora"
    scalearn = fits[fits["method"] == "scalearn"].iloc[0]
    fitted = load_fitted_model(cache / scalearn["artifact_run_id"] / "adapter", cfg.backbone)
    test = load_splits(next((cfg.home_dir() / "data").glob("demo_lowres-*"))).test
    rows = [{**dict(zip(input_fields(fitted.spec), ex.texts)), "label": fitted.spec.label_names[ex.label]} for ex in test]
    assert score_rows(fitted, rows)["accuracy"] == pytest.approx(scalearn["test_accuracy"], abs=1e-6)

    # the fit as a PEFT LoRA folder, by the CLI; a folder that is not an earlier PEFT export stays as it was
    out, other = tmp_path / "peft", tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    config = ["--config", str(config_path)]
    result = invoke("export-peft", "demo_lowres/scalearn", out, *config)
    assert result[0] == 0, result
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    code, _, stderr = invoke("export-peft", "demo_lowres/scalearn", out, *config)
    assert code == 2 and "exists and is not empty" in stderr
    assert invoke("export-peft", "demo_lowres/scalearn", out, "--overwrite", *config)[0] == 0
    code, _, stderr = invoke("export-peft", "demo_lowres/scalearn", other, "--overwrite", *config)
    assert code == 2 and "is not a PEFT export of adapterflow" in stderr
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    code, _, stderr = invoke("export-peft", "demo_lowres/adapterfusion", tmp_path / "fusion", *config)
    assert code == 2 and "no fitted unit demo_lowres/adapterfusion" in stderr


def test_methods_that_generate_bottleneck_adapters_refuse_lora_when_the_config_loads(tiny_config):
    with pytest.raises(ConfigError, match="hyperformer_plus_plus_few_shot generates bottleneck adapters"):
        load_config(tiny_config(adapter=LORA, methods=["adapter", "hyperformer_plus_plus_few_shot"])[0])
    with pytest.raises(ConfigError, match="field 'adapter': lora_rank must be positive"):
        load_config(tiny_config(adapter={**LORA, "lora_rank": 0})[0])
