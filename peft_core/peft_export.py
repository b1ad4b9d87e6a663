"""Write a fitted LoRA unit as a Hugging Face PEFT LoRA folder that `PeftModel.from_pretrained` loads
with the same outputs.

    export_peft_lora(Path("fits/rte-adaptersoup"), backbone, Path("exports/rte-adaptersoup"))
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(backbone_path), "exports/rte-adaptersoup")

What exports: every unit whose update at a site is a fixed linear combination of LoRAs, written as
one LoRA per site whose product is that update exactly (the coefficients folded into B, as
`LoraBank.concatenated` says):
- a single LoRA adapter: its own A, B, rank and alpha;
- `average` and `adaptersoup` over LoRA sources: `Σ_j w_j s B_j A_j`, rank (sources with a weight)·r;
- the four ScaLearns over LoRA sources: `Σ_j ω_j ⊙ s B_j A_j`, rank K·r. A per-dimension ω_j scales
  the output rows of B_j, a per-source one all of them; both are exact (ω's dropout is training's).
Refused in one line: bottleneck adapters (PEFT has no bottleneck adapter: they stay adapterflow's
format), AdapterFusion and PEMT (they weigh the sources per token or example, so no single LoRA
computes them), an adapter trained with a task prompt, an imported PEFT LoRA (its folder is the
export) and any artifact that holds no LoRA.

The task head does not go into PEFT's `modules_to_save`: our heads read the mean of the last hidden
state over the attention mask (a decoder's: its last real token's state), and no module of the backbone (an
AutoModel) computes that, so PEFT
has nowhere to put it. It is written beside the LoRA, where PEFT ignores it: `task_head.safetensors`
(`weight`, `bias`) and `adapterflow_export.json`, which says how logits follow from the hidden
states and records the task (labels), the backbone (name, fingerprint) and the exported artifact.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import save_file
from transformers.pytorch_utils import Conv1D

from .artifact_layout import IMPORTED_LORA, PROMPT_ADAPTER, artifact_kind
from .artifacts import read_artifact_config
from .backbones import Backbone
from .checkpoints import atomic_directory_write
from .compositions import ScaLearn, SingleAdapter, UniformAverage
from .errors import ArtifactError
from .inference import load_fitted_model
from .peft_folder import PEFT_WEIGHTS_FILE, lora_module_paths, peft_tensor_name
from .pooling import POOLINGS
from .sites import Composition

HEAD_FILE = "task_head.safetensors"
NOTE_FILE = "adapterflow_export.json"


def head_computes(backbone: Backbone) -> str:
    """What the exported head computes, in words, for its note."""
    return (f"logits = pooled · weightᵀ + bias, {POOLINGS[backbone.layout.pooling].formula} over the backbone's last "
            "hidden state h and the attention mask; a regression's one logit is its score, multiple choice "
            "scores each (context, choice) row and compares a question's choices")


def export_peft_lora(folder: Path, backbone: Backbone, output_dir: Path) -> Path:
    """Write the fitted unit in `folder` (on `backbone`) as a PEFT LoRA folder with its head beside it."""
    folder = Path(folder)
    config = read_artifact_config(folder)
    if problem := export_problem(config, folder):
        raise ArtifactError(f"{folder} does not export to PEFT: {problem}")
    fitted = load_fitted_model(folder, backbone, device="cpu")
    try:
        updates = {(site.layer, site.position): fixed_lora(site.composition) for site in fitted.model.sites}
        head = {name: t.detach().clone()
                for name, t in fitted.model.heads[fitted.spec.name].linear.state_dict().items()}
    finally:
        fitted.close()
    if None in updates.values():
        raise ArtifactError(f"{folder} does not export to PEFT: a '{config['method']}' fit weighs its sources per "
                            "token or example, so no single LoRA computes it; PEFT export takes a LoRA adapter, "
                            "average, adaptersoup or a ScaLearn")
    paths = {place: path for path, place in lora_module_paths(backbone).items()}
    lora_config = peft_config({paths[place]: update for place, update in updates.items()}, backbone,
                              config["adapter"]["lora_dropout"])
    weights = {peft_tensor_name(paths[place], matrix): tensor.contiguous()
               for place, (state, _) in updates.items() for matrix, tensor in state.items()}
    note = {"exported_from": str(folder.resolve()), "method": config["method"], "backbone": backbone.describe(),
            "task": fitted.spec.to_json(), "head": {"file": HEAD_FILE, "computes": head_computes(backbone)}}

    def write(tmp: Path) -> None:
        lora_config.save_pretrained(str(tmp))
        save_file(weights, tmp / PEFT_WEIGHTS_FILE)
        save_file(head, tmp / HEAD_FILE)
        (tmp / NOTE_FILE).write_text(json.dumps(note, indent=2, sort_keys=True))

    atomic_directory_write(Path(output_dir), write)
    return Path(output_dir)


def export_problem(config: dict, folder: Path) -> str | None:
    """Why an artifact cannot be a PEFT LoRA, seen before loading it (an input-dependent method shows once loaded)."""
    kind, adapter = artifact_kind(config, folder), config.get("adapter") or {}
    if kind.name not in ("adapter", "transfer"):
        return f"a '{config['method']}' artifact holds no LoRA adapter"
    if adapter.get("kind") != "lora":
        return ("it is made of bottleneck adapters, which PEFT has no format for; bottleneck adapters stay "
                "adapterflow artifacts (train adapter kind lora to export)")
    if config["method"] == IMPORTED_LORA:
        return f"it was imported from the PEFT folder {config['imported_from']['folder']}: that folder is the export"
    if config["method"] == PROMPT_ADAPTER:
        return "it was trained with a task prompt before its input, which a PEFT LoRA cannot carry"
    return None


def fixed_lora(composition: Composition) -> tuple[dict[str, torch.Tensor], float] | None:
    """({lora_A, lora_B}, scale) of the one LoRA that computes `composition`'s update; None where none does."""
    if isinstance(composition, ScaLearn):
        bank, coefficients = composition.bank, composition.omega.detach()
    elif isinstance(composition, UniformAverage):
        bank, coefficients = composition.bank, composition.coefficients
    elif isinstance(composition, SingleAdapter) and composition.layer_norm is None:  # a LoRA adapter, a soup
        bank, coefficients = composition.bank, torch.ones(1, 1)
    else:
        return None
    return bank.concatenated(coefficients), bank.scale


def peft_config(updates: dict[str, tuple[dict[str, torch.Tensor], float]], backbone: Backbone,
                dropout: float) -> LoraConfig:
    """A LoraConfig targeting exactly these module paths, each at its rank and scale: the most common rank as `r`,
    the others (a ScaLearn source whose ω is zero at some site only) in rank_pattern and alpha_pattern."""
    ranks = {path: state["lora_A"].shape[0] for path, (state, _) in updates.items()}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    scale = next(s for _, s in updates.values())
    other = {re.escape(path): r for path, r in ranks.items() if r != rank}
    # PEFT's flag for a base weight stored (in, out), as GPT-2's Conv1D stores it (LoRA's A and B are as for Linear)
    fan_in_fan_out = any(isinstance(backbone.model.get_submodule(path), Conv1D) for path in updates)
    return LoraConfig(r=rank, lora_alpha=scale * rank, target_modules=list(updates), lora_dropout=dropout, bias="none",
                      rank_pattern=other, alpha_pattern={p: scale * r for p, r in other.items()},
                      fan_in_fan_out=fan_in_fan_out, base_model_name_or_path=backbone.name, inference_mode=True)
