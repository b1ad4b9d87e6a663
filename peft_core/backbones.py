"""Load a Hugging Face encoder and know where its adapter sites are.

An *architecture layout* names, per layer, the modules adapters wrap:
- `ffn_norm`: the feed-forward block's output LayerNorm, which receives `f + x` (FFN output plus
  its input). The "pfeiffer" placement wraps it (METHODS §0).
- `attn_out` / `ffn_out`: the output projections of the attention and feed-forward sub-layers.
  The "houlsby" placement wraps them, acting on the sub-layer output before the residual.
- `ffn_dropout`: the dropout after the FFN's output projection, whose output is f; the "pfeiffer"
  site observes it (its LayerNorm only receives the sum f + x).
- `query` / `key` / `value`: the attention's input projections, and `ffn_in` the FFN's first
  linear layer. With `attn_out` and `ffn_out` these are the linear modules a LoRA may wrap
  (`configs.LoraTarget` names them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import get_args

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from .backbone_paths import resolve_backbone_path
from .backbone_state import BackboneState
from .configs import LoraTarget
from .errors import BackboneError


@dataclass(frozen=True)
class ArchitectureLayout:
    layers: str
    ffn_norm: str
    attn_out: str
    ffn_out: str
    ffn_dropout: str
    query: str
    key: str
    value: str
    ffn_in: str


if missing := set(get_args(LoraTarget)) - {f.name for f in fields(ArchitectureLayout)}:
    raise RuntimeError(f"configs.LoraTarget names {sorted(missing)}, which ArchitectureLayout does not")

_BERT_LIKE = ArchitectureLayout(
    layers="encoder.layer", ffn_norm="output.LayerNorm", attn_out="attention.output.dense", ffn_out="output.dense",
    ffn_dropout="output.dropout", query="attention.self.query", key="attention.self.key",
    value="attention.self.value", ffn_in="intermediate.dense",
)
LAYOUTS: dict[str, ArchitectureLayout] = {
    "bert": _BERT_LIKE,  # BERT and MiniLM (all-MiniLM-L6-v2 is a BertModel)
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "deberta-v2": replace(_BERT_LIKE, query="attention.self.query_proj", key="attention.self.key_proj",
                          value="attention.self.value_proj"),
    "distilbert": ArchitectureLayout(
        layers="transformer.layer", ffn_norm="output_layer_norm", attn_out="attention.out_lin", ffn_out="ffn.lin2",
        ffn_dropout="ffn.dropout", query="attention.q_lin", key="attention.k_lin", value="attention.v_lin",
        ffn_in="ffn.lin1",
    ),
}

@dataclass
class Backbone:
    """A loaded encoder, its tokenizer, and the facts adapters are checked against. `state` owns the
    encoder's tensor values: a model that computes with values of its own overrides them there."""

    name: str
    model: PreTrainedModel
    tokenizer: object
    layout: ArchitectureLayout
    fingerprint: str
    state: BackboneState = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.state = BackboneState(self.model)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.dim

    @property
    def num_layers(self) -> int:
        return len(self.layers())

    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.layout.layers)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model.config.model_type,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "fingerprint": self.fingerprint,
        }


def layout_for(config: PretrainedConfig) -> ArchitectureLayout:
    try:
        return LAYOUTS[config.model_type]
    except KeyError:
        raise BackboneError(
            f"backbone architecture '{config.model_type}' has no adapter sites defined; "
            f"supported: {', '.join(sorted(LAYOUTS))} (add a layout to peft_core/backbones.py LAYOUTS)"
        ) from None


def fingerprint_model(model: PreTrainedModel) -> str:
    """Identify a backbone by its architecture and a sample of its weights.

    Two checkpoints of the same shape (bert-base and a fine-tuned bert-base) must not match, so
    the config alone is not enough; hashing every weight would cost seconds, so we hash a slice.
    """
    cfg = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k not in _VOLATILE_KEYS}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    embedding = model.get_input_embeddings().weight.detach()
    h.update(embedding[:64].to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_VOLATILE_KEYS = {"transformers_version", "architectures", "torch_dtype", "dtype", "name_or_path", "use_cache"}


def attention_implementation() -> str:
    """PyTorch's fused attention on CUDA; on CPU the plain one: equal in fp32, and under bf16
    autocast its backward is 1.9x faster than the fused kernel's (benchmarks/precision.py, B5)."""
    return "sdpa" if torch.cuda.is_available() else "eager"


def load_backbone(name: str, *, trust_remote_code: bool = False) -> Backbone:
    """Load encoder weights and tokenizer by name ("minilm", a local folder, or a hub id when online)."""
    path = resolve_backbone_path(name)
    try:
        model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code,
                                          attn_implementation=attention_implementation())
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackboneError(
            f"cannot load backbone '{name}' ({str(exc).splitlines()[0]}); use 'minilm', a local model "
            "folder, or a Hugging Face id that is in your cache"
        ) from None
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise BackboneError(f"backbone '{name}' ({path}) has no tokenizer vocabulary; the model folder needs its "
                            "tokenizer files (tokenizer.json or vocab.txt) beside config.json")
    return wrap_backbone(name, model, tokenizer)


def wrap_backbone(name: str, model: PreTrainedModel, tokenizer) -> Backbone:
    """Freeze a model already in memory (tests build tiny random ones) and describe it."""
    model.requires_grad_(False)
    return Backbone(name=name, model=model, tokenizer=tokenizer, layout=layout_for(model.config), fingerprint=fingerprint_model(model))
