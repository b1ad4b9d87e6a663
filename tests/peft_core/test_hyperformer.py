"""HyperFormer: generated adapters, what trains, parameter counts (METHODS §2, BENCHMARK B3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import T5Config

from peft_core.artifacts import save_artifact
from peft_core.configs import AdapterConfig
from peft_core.errors import ConfigError
from peft_core.hyperformer import (
    HyperFormerModel,
    HyperNetConfig,
    config_layernorm_count,
    hyperformer_parameter_count,
    layernorm_parameters,
)
from peft_core.adapter_jobs import adapter_tensors, build_adapter_model, load_adapter_model
from peft_core.task_specs import get_task
from tests.helpers.core import random_batch, tiny_bert

SPECS = [get_task("demo_sentiment"), get_task("demo_nli"), get_task("demo_similarity")]
ADAPTER = AdapterConfig(reduction_factor=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["hyperformer", "hyperformer_plus_plus"])
def model(request):
    m = HyperFormerModel(tiny_bert(), SPECS, ADAPTER, HyperNetConfig(variant=request.param))
    yield m
    m.detach()


def test_generated_adapters_differ_per_task_layer_and_position(model):
    first, second = model.hypernetwork("demo_sentiment"), model.hypernetwork("demo_nli")
    assert first["down_weight"].shape == (2, 2, 32, 8) and first["up_weight"].shape == (2, 2, 8, 32)
    for name in first:
        assert not torch.allclose(first[name], second[name]), name
        assert not torch.allclose(first[name][0], first[name][1]), f"{name}: layers 0 and 1"
        assert not torch.allclose(first[name][:, 0], first[name][:, 1]), f"{name}: attn and ffn"


def test_hypernetwork_runs_once_per_forward_and_sites_use_its_weights(model):
    calls = []
    model.hypernetwork.register_forward_hook(lambda *args: calls.append(1))
    model(random_batch(), "demo_sentiment")
    assert len(calls) == 1
    model(random_batch(), "demo_nli")
    assert len(calls) == 2
    assert model.generated.weights is None  # nothing (and no graph) kept between passes


def test_only_hypernetwork_embeddings_layernorms_and_heads_get_gradients(model):
    model(random_batch(), "demo_sentiment").loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("hypernetwork.generators") for n in with_grad)
    assert "hypernetwork.task_embeddings.weight" in with_grad and "hypernetwork.layer_embeddings" in with_grad
    assert any(n.endswith("LayerNorm.weight") and n.startswith("encoder.") for n in with_grad)
    assert "heads.demo_sentiment.linear.weight" in with_grad
    assert not any(n.startswith("heads.demo_nli") for n in with_grad)
    for name, module in model.encoder.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            assert all(p.grad is None and not p.requires_grad for p in module.parameters()), name
    # other tasks' embeddings receive no gradient
    assert model.hypernetwork.task_embeddings.weight.grad[1:].abs().sum() == 0


def test_closed_form_parameter_count_equals_module_count(model):
    counts = model.count_parameters()
    closed = model.closed_form_parameter_count()
    assert closed["total"] == counts["excluding_heads"]
    assert closed["backbone_layernorms"] == (2 * 2 + 1) * 2 * 32  # embeddings + 2 per layer, weight and bias
    assert counts["heads"] == sum(p.numel() for p in model.heads.parameters())


def test_t5_base_hyperformer_plus_plus_has_the_published_size():
    t5_base = T5Config(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64)
    count = hyperformer_parameter_count(768, 12, 8, 32, HyperNetConfig(), stacks=2,
                                        layernorm_params=config_layernorm_count(t5_base))
    assert round(count["total"] / 1e6, 2) == 5.21
    backbone_params = 222_903_552  # T5-base encoder-decoder (T5Model)
    assert round(100 * count["total"] / 8 / backbone_params, 2) == 0.29


def test_unknown_task_is_a_config_error_naming_the_known_tasks(model):
    with pytest.raises(ConfigError, match="demo_sentiment, demo_nli, demo_similarity"):
        model(random_batch(), "rte")


def test_detach_restores_the_backbone_as_loaded():
    backbone = tiny_bert()
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    model = HyperFormerModel(backbone, SPECS, ADAPTER)
    with torch.no_grad():
        for p in layernorm_parameters(backbone).values():
            p.add_(1.0)
    model.detach()
    after = backbone.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_an_adapter_with_layer_norm_after_round_trips_through_an_artifact(tmp_path):
    backbone = tiny_bert()
    spec = get_task("demo_sentiment")
    config = AdapterConfig(placement="houlsby", reduction_factor=4, layer_norm_after=True)
    model = build_adapter_model(backbone, spec, config)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p))
    tensors = adapter_tensors(model, spec.name)
    assert {"sites.1.ffn.ln_weight", "sites.1.ffn.ln_bias"} <= tensors.keys()
    save_artifact(tmp_path / "a", tensors, {"adapter": config.to_dict(), "backbone": backbone.describe()})
    model.eval()
    batch = random_batch()
    with torch.no_grad():
        expected = model(batch, spec.name).logits
    model.detach()
    loaded = load_adapter_model(tmp_path / "a", backbone, spec)
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch, spec.name).logits, expected)
    adapter, hidden = loaded.sites[0].composition, torch.randn(2, 3, 32)
    torch.testing.assert_close(adapter(hidden, None), adapter.layer_norm(adapter.bank(hidden)))
    loaded.detach()
