"""Load a Hugging Face backbone for one *output* and wrap it with the facts adapters are checked against.

`head`: task heads read its last states (of an encoder-decoder only the encoder is loaded); `text`: an
encoder-decoder whole, answering in words (`text_model.py`), whose decoder blocks are a second *stack*
of layers with adapter sites. Where the sites are in each family is `architectures.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import (
    AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoModelForTextEncoding, AutoTokenizer, PreTrainedModel,
)
from transformers.pytorch_utils import Conv1D

from .architectures import DECODER_STACK, ArchitectureLayout, Output, check_output, layout_for
from .backbone_paths import resolve_backbone_path
from .backbone_state import BackboneState
from .errors import BackboneError
from .pooling import POOLINGS

log = logging.getLogger(__name__)
# transformers' loading is not thread-safe: two T5 encoders loaded at once by the threads runner left
# their tied input embeddings on the meta device. Loading is a small part of a unit, so one at a time.
_FROM_PRETRAINED = threading.Lock()


@dataclass
class Backbone:
    """A loaded backbone, its tokenizer, and the facts adapters are checked against. `state` owns the
    backbone's tensor values: a model that computes with values of its own overrides them there."""

    name: str
    model: PreTrainedModel
    tokenizer: object
    layout: ArchitectureLayout
    fingerprint: str
    output: Output = "head"
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

    def stacks(self) -> list[tuple[str, nn.ModuleList, ArchitectureLayout]]:
        """(site-key prefix, layers, layout) of each stack of layers that carries adapter sites."""
        stacks = [("", self.layers(), self.layout)]
        if self.output == "text":
            stacks.append((DECODER_STACK, self.model.get_submodule(self.layout.decoder.layers), self.layout.decoder))
        return stacks

    def module_path(self, role: str, layout: ArchitectureLayout | None = None) -> str:
        """The path of `role`'s module inside a layer (of `layout`'s stack, by default the encoder's);
        a role this family lacks is a BackboneError."""
        path = getattr(layout or self.layout, role)
        if path is None:
            fused = " (its attention computes query, key and value in one module: use 'qkv')" if self.layout.qkv else ""
            raise BackboneError(f"backbone '{self.name}' ({self.model.config.model_type}) has no '{role}' module{fused}; "
                                f"set adapter.lora_targets among {', '.join(self.layout.roles())}")
        return path

    def linear_shape(self, layer: int, role: str) -> tuple[int, int]:
        """(out, in) of the linear module `role` in `layer` (the module itself, or the one a site wraps)."""
        module = self.layers()[layer].get_submodule(self.module_path(role))
        in_features, out_features = module_widths(getattr(module, "base_layer", module))
        return out_features, in_features

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, d): each row's sentence vector from its last hidden states, as the family pools them."""
        return POOLINGS[self.layout.pooling].pool(hidden, mask)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model.config.model_type,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "fingerprint": self.fingerprint,
        }


def module_widths(module: nn.Module) -> tuple[int, int]:
    """(in, out) features of a linear module, a torch Linear or GPT-2's Conv1D (weight (in, out)); a
    norm's width both ways."""
    if isinstance(module, Conv1D):
        return tuple(module.weight.shape)
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.weight.shape[0], module.weight.shape[0]


def fingerprint_model(model: PreTrainedModel) -> str:
    """Identify a backbone by its architecture and a sample of its weights.

    Two checkpoints of the same shape (bert-base and a fine-tuned bert-base) must not match, so
    the config alone is not enough; hashing every weight would cost seconds, so we hash a slice.
    """
    cfg = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k not in _VOLATILE_KEYS}
    if "is_encoder_decoder" in cfg:  # one checkpoint, one fingerprint: loaded alone, T5's encoder reports False
        cfg["is_encoder_decoder"] = False
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    embedding = model.get_input_embeddings().weight.detach()
    h.update(embedding[:64].to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_VOLATILE_KEYS = {"transformers_version", "architectures", "torch_dtype", "dtype", "name_or_path", "use_cache"}


def attention_implementation() -> str:
    """PyTorch's fused attention on CUDA; on CPU the plain one: equal in fp32, and under bf16
    autocast its backward is 1.9x faster than the fused kernel's (benchmarks/precision.py, B5)."""
    return "sdpa" if torch.cuda.is_available() else "eager"


def load_backbone(name: str, *, output: Output = "head", trust_remote_code: bool = False) -> Backbone:
    """Load a backbone's weights and tokenizer by name ("minilm", a local folder, or a hub id in the
    cache) for `output`: "head" (of an encoder-decoder only the encoder is loaded: task heads read
    its states) or "text" (an encoder-decoder with its decoder and language-model head)."""
    path = resolve_backbone_path(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        check_output(name, layout_for(config), output)  # refused before the weights load
        model_class = _MODEL_CLASSES[output] if config.is_encoder_decoder else AutoModel
        with _FROM_PRETRAINED:
            model = model_class.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                attn_implementation=attention_implementation())
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackboneError(
            f"cannot load backbone '{name}' ({str(exc).splitlines()[0]}); use 'minilm', a local model "
            "folder, or a Hugging Face id that is in your cache"
        ) from None
    if unloaded := [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]:
        raise BackboneError(f"backbone '{name}' ({path}): its checkpoint has no values for {', '.join(unloaded[:3])}"
                            f"{' ...' if len(unloaded) > 3 else ''}; save the model folder again with save_pretrained")
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise BackboneError(f"backbone '{name}' ({path}) has no tokenizer vocabulary; the model folder needs its "
                            "tokenizer files (tokenizer.json or vocab.txt) beside config.json")
    return wrap_backbone(name, model, tokenizer, output=output)


_MODEL_CLASSES = {"head": AutoModelForTextEncoding, "text": AutoModelForSeq2SeqLM}


def wrap_backbone(name: str, model: PreTrainedModel, tokenizer, *, output: Output = "head") -> Backbone:
    """Freeze a model already in memory (tests build tiny random ones) and describe it."""
    layout = layout_for(model.config)
    check_output(name, layout, output)
    if tokenizer is not None:
        _pad_on_the_right(name, tokenizer)
    model.requires_grad_(False)
    return Backbone(name=name, model=model, tokenizer=tokenizer, layout=layout, fingerprint=fingerprint_model(model),
                    output=output)


def _pad_on_the_right(name: str, tokenizer) -> None:
    """Batches are padded after each row's tokens, so a causal model's states of a row do not depend
    on the rows beside it. A tokenizer without a padding token (Llama's, GPT-2's) pads with its
    end-of-sequence token: padded positions are masked out, so which id fills them does not matter."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise BackboneError(f"backbone '{name}': its tokenizer has neither a padding nor an end-of-sequence "
                                "token to pad batches with; add one to the model folder (tokenizer.add_special_tokens"
                                "({'pad_token': '<pad>'}) and save_pretrained) and load it again")
        log.info("backbone '%s': its tokenizer has no padding token; padding with its end-of-sequence token %r",
                 name, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
