"""Where adapters sit in each supported architecture, without torch (the CLI checks a backbone
folder with it before anything loads).

Three families: encoders (BERT-like, DistilBERT, DeBERTa-v2), encoder-decoders (T5, Flan-T5, mT5)
and decoder-only models (Llama, Mistral, Qwen2/3, GPT-2). An *architecture layout* names, per layer,
the modules adapters wrap:
- `attn_out` / `ffn_out`: the output projections of the attention and feed-forward sub-layers.
  The "houlsby" placement wraps both, acting on the sub-layer output before the residual.
- `ffn_norm` (post-norm layouts): the feed-forward block's output LayerNorm, which receives `f + x`
  (FFN output plus its input). The "pfeiffer" placement wraps it (METHODS §0); `ffn_dropout`, the
  dropout after the FFN's output projection, gives the site f itself (its LayerNorm only sees f + x).
  A pre-norm layout (`norm="pre"`: T5, Llama, GPT-2) has no LayerNorm after the sub-layer: there
  an adapter acts on the sub-layer's output, `y = Sub(LN(h)); y = A(y); h + drop(y)`, so
  "pfeiffer" wraps `ffn_out` as "houlsby" does.
- `query` / `key` / `value` (or `qkv` where one module computes all three, GPT-2's `c_attn`) and
  `ffn_in`: with `attn_out` and `ffn_out`, the linear modules a LoRA may wrap
  (`configs.LoraTarget` names them); a role a family lacks is None.
- `pooling`: how a sentence becomes one vector for a task head: the mean over its tokens
  (encoders) or the last non-padding token's state (decoder-only models, whose earlier tokens
  cannot see the later ones).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

from .configs import LoraTarget
from .errors import BackboneError

Pooling = Literal["mean", "last"]
Family = Literal["encoder", "encoder-decoder", "decoder-only"]
Output = Literal["head", "text"]
OUTPUTS: tuple[str, ...] = get_args(Output)
DECODER_STACK = "decoder."  # the site-key prefix of a text model's decoder layers (the encoder's have none)


@dataclass(frozen=True)
class ArchitectureLayout:
    layers: str
    attn_out: str
    ffn_out: str
    ffn_in: str
    query: str | None
    key: str | None
    value: str | None
    qkv: str | None = None
    norm: Literal["post", "pre"] = "post"
    ffn_norm: str | None = None  # post-norm only
    ffn_dropout: str | None = None  # post-norm only
    pooling: Pooling = "mean"
    family: Family = "encoder"
    decoder: ArchitectureLayout | None = None  # an encoder-decoder's decoder blocks, for `text` output

    def roles(self) -> list[str]:
        """The LoRA target roles this family has."""
        return [role for role in get_args(LoraTarget) if getattr(self, role) is not None]


if missing := set(get_args(LoraTarget)) - {f.name for f in fields(ArchitectureLayout)}:
    raise RuntimeError(f"configs.LoraTarget names {sorted(missing)}, which ArchitectureLayout does not")

_BERT_LIKE = ArchitectureLayout(
    layers="encoder.layer", ffn_norm="output.LayerNorm", attn_out="attention.output.dense", ffn_out="output.dense",
    ffn_dropout="output.dropout", query="attention.self.query", key="attention.self.key",
    value="attention.self.value", ffn_in="intermediate.dense",
)
_T5_ENCODER = ArchitectureLayout(
    layers="encoder.block", attn_out="layer.0.SelfAttention.o", ffn_out="layer.1.DenseReluDense.wo",
    query="layer.0.SelfAttention.q", key="layer.0.SelfAttention.k", value="layer.0.SelfAttention.v",
    ffn_in="layer.1.DenseReluDense.wi", norm="pre", family="encoder-decoder",
    # Decoder blocks: self-attention, cross-attention (layer.1, no adapter, as in HyperFormer), FFN.
    decoder=ArchitectureLayout(
        layers="decoder.block", attn_out="layer.0.SelfAttention.o", ffn_out="layer.2.DenseReluDense.wo",
        query="layer.0.SelfAttention.q", key="layer.0.SelfAttention.k", value="layer.0.SelfAttention.v",
        ffn_in="layer.2.DenseReluDense.wi", norm="pre", family="encoder-decoder",
    ),
)
_LLAMA_LIKE = ArchitectureLayout(
    layers="layers", attn_out="self_attn.o_proj", ffn_out="mlp.down_proj", query="self_attn.q_proj",
    key="self_attn.k_proj", value="self_attn.v_proj", ffn_in="mlp.up_proj", norm="pre", pooling="last",
    family="decoder-only",
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
    "t5": _T5_ENCODER,  # T5 and Flan-T5
    "mt5": _T5_ENCODER,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gpt2": ArchitectureLayout(
        layers="h", attn_out="attn.c_proj", ffn_out="mlp.c_proj", query=None, key=None, value=None,
        qkv="attn.c_attn", ffn_in="mlp.c_fc", norm="pre", pooling="last", family="decoder-only",
    ),
}


def supported_families() -> str:
    """The supported model types by family, for messages."""
    by_family: dict[str, list[str]] = {}
    for model_type, layout in LAYOUTS.items():
        by_family.setdefault(layout.family, []).append(model_type)
    return "; ".join(f"{family}: {', '.join(types)}" for family, types in by_family.items())


def check_model_type(model_type: str) -> ArchitectureLayout:
    """The layout of `model_type` (a config's), or a one-line BackboneError naming the supported ones."""
    layout = LAYOUTS.get(model_type)
    if layout is None:
        raise BackboneError(f"backbone architecture '{model_type}' is not supported (no adapter sites known "
                            f"for it); supported: {supported_families()}")
    return layout


def layout_for(config) -> ArchitectureLayout:
    """The layout of a transformers config's architecture."""
    layout = check_model_type(config.model_type)
    if getattr(config, "is_gated_act", False):  # T5 v1.1, Flan-T5, mT5: wi_0 (gate) and wi_1 instead of wi
        layout = _gated(layout)
    return layout


def _gated(layout: ArchitectureLayout) -> ArchitectureLayout:
    return replace(layout, ffn_in=layout.ffn_in + "_0", decoder=layout.decoder and _gated(layout.decoder))


def check_output(name: str, layout: ArchitectureLayout, output: str) -> None:
    """A BackboneError unless `layout`'s family can answer in `output` form."""
    if output not in OUTPUTS:
        raise BackboneError(f"unknown task output {output!r} for backbone '{name}'; use one of {', '.join(OUTPUTS)}")
    if output == "text" and layout.decoder is None:
        raise BackboneError(f"backbone '{name}' is of the {layout.family} family: text-to-text tasks (task_output: "
                            "text) need an encoder-decoder (T5, Flan-T5, mT5); use task_output: head")
