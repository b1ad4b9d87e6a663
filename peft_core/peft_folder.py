"""A Hugging Face PEFT LoRA folder, as `PeftModel.save_pretrained` writes it, and where its modules
sit in our backbone: what `peft_import` and `peft_export` share.

    adapter_config.json         LoraConfig's fields (r, lora_alpha, target_modules, base_model_name_or_path...)
    adapter_model.safetensors   base_model.model.<module path>.lora_A.weight (r, in), .lora_B.weight (out, r)

A module path is the module's name in the model PEFT wrapped: the backbone's own names
(`encoder.layer.0.attention.self.query` in a BertModel), or the same under a task model's base-model
attribute (`bert.encoder.layer.0.attention.self.query` in a BertForSequenceClassification).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the folder's names stay importable without torch (the config checks them)
    from .backbones import Backbone

# PEFT's config file has our artifacts' config file name: a folder holds one format or the other
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_FILES = (PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE)
PEFT_PREFIX = "base_model.model."
LORA_MATRICES = ("lora_A", "lora_B")


def lora_module_paths(backbone: Backbone) -> dict[str, tuple[int, str]]:
    """{module path in the backbone: (layer, role)} of every linear module a LoRA may wrap."""
    layout = backbone.layout
    return {f"{layout.layers}.{i}.{backbone.module_path(role)}": (i, role)
            for i in range(backbone.num_layers) for role in layout.roles()}


def peft_tensor_name(module_path: str, matrix: str) -> str:
    """The name `save_pretrained` gives a LoRA matrix ("lora_A" or "lora_B") of the module at `module_path`."""
    return f"{PEFT_PREFIX}{module_path}.{matrix}.weight"
