"""Take a Hugging Face PEFT LoRA folder in as one of our LoRA source artifacts.

    import_peft_lora(Path("hub/sst2-lora"), backbone, get_task("sst2"), Path("sources/sst2"))
    fit_transfer(backbone, target, splits, "scalearn", [Path("sources/sst2"), ...], TrainConfig(), out)

The artifact is an adapter artifact of method `peft_lora`: each site's `lora_A`/`lora_B` where a LoRA
trained here keeps them, an `adapter` config of kind lora, the given backbone's description and
fingerprint (later loads check it, as for any artifact), the user's task spec, and `imported_from`
(the folder, its weights' digest, its base model, its PEFT version). It loads as a source wherever
sources load (`transfer.load_sources`), and every transfer method combines it but PEMT, which
refuses sources without a task prompt (PEFT has none).

It has no task head. A PEFT classifier head (`modules_to_save`: classifier, score, pre_classifier)
reads the CLS token or the pooler, not the mean-pooled representation our heads read, so it does
not carry over and is left behind (`imported_from.head_left_behind` names its tensors). No transfer
method needs a source's head (each trains a new one for its target); `head_from` and predicting
with the imported source alone refuse it in one line.

How it maps (exactly: the imported updates are the folder's ΔW):
- each LoRA module is placed by its path, with or without the task model's base-model attribute,
  on the architecture layout's role it is (`query`, `q_lin`, `query_proj`, `intermediate.dense`...);
- per-module ranks and scales (`rank_pattern`, `alpha_pattern`, `use_rslora`'s alpha/√r) become one
  rank and one scale: each module's A is zero-padded to the largest rank and the ratio of its scale
  to the common one is folded into its B;
- a LoRA on some layers only (`layers_to_transform`) is zero on the others.
`adapter=` imports into a given LoRA config instead (rank at least the folder's, targets including
its roles, any alpha), so that the source stacks with sources trained here (stacked sources share
rank, alpha and targets). Refused, each in one line naming the fix: another base model (by its
recorded name, and by any LoRA whose shape is not its module's), modules we cannot place, DoRA,
trained biases, saved modules other than a classifier head, initialisations that change the base
weights (PiSSA, OLoRA, LoftQ...) and any other setting that makes it more than W + s·B·A.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch
from safetensors.torch import load_file

from .artifact_layout import IMPORTED_LORA, single_adapter_tensors
from .artifacts import artifact_config, save_artifact, task_entries
from .backbone_paths import ALIASES
from .backbones import Backbone
from .configs import AdapterConfig, LoraTarget
from .errors import ArtifactError, ConfigError
from .peft_folder import (
    LORA_MATRICES, PEFT_CONFIG_FILE, PEFT_PREFIX, PEFT_WEIGHTS_FILE, lora_module_paths,
)
from .sites import site_key
from .task_specs import TaskSpec

HEAD_MODULES = ("classifier", "score", "pre_classifier")  # PEFT's modules_to_save for a classification model
# init_lora_weights that leave the base model's weights as they are (PiSSA, OLoRA, LoftQ, CorDA... do not)
PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal")
# LoraConfig fields this module reads, or that leave a plain LoRA's W + s·B·A as it is (metadata, init, targeting)
UNDERSTOOD = frozenset({
    "peft_type", "peft_version", "base_model_name_or_path", "revision", "task_type", "inference_mode",
    "auto_mapping", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "layers_to_transform",
    "layers_pattern", "rank_pattern", "alpha_pattern", "use_rslora", "bias", "modules_to_save", "init_lora_weights",
    "use_dora", "fan_in_fan_out", "eva_config", "megatron_config", "megatron_core", "qalora_group_size",
    "ensure_weight_tying", "runtime_config",
})


@dataclass(frozen=True)
class ModuleLora:
    """One module's LoRA in a PEFT folder: A (r, in), B (out, r) and its scale."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float

    @property
    def rank(self) -> int:
        return self.a.shape[0]


def import_peft_lora(folder: Path, backbone: Backbone, spec: TaskSpec, output_dir: Path, *,
                     adapter: AdapterConfig | None = None, base_model: str | None = None) -> Path:
    """Write the PEFT LoRA in `folder` as a source artifact for task `spec` on `backbone` in `output_dir`.

    `adapter`: the LoRA config to import into (default: the folder's own rank, alpha and targets).
    `base_model`: the name the folder records for its base model (`base_model_name_or_path`) when
    that is `backbone` under another name (a hub id against a local copy); by default the two names
    must agree (or the folder records none). Any refusal is an ArtifactError or ConfigError of one line.
    """
    folder = Path(folder)
    settings = read_peft_config(folder)
    if problem := lora_problem(settings):
        raise ArtifactError(f"PEFT folder {folder} {problem}")
    check_base_model(settings, backbone, folder, base_model)
    tensors = load_file(folder / PEFT_WEIGHTS_FILE)
    loras = placed_loras(tensors, settings, backbone, folder)
    adapter = adapter or own_adapter_config(settings, loras)
    sites = site_states(loras, adapter, backbone, settings, folder)
    left_behind = sorted(module for module, matrix in map(_module_and_matrix, tensors) if matrix is None)
    config = artifact_config(IMPORTED_LORA, backbone, adapter, None, {}, **task_entries(spec, None), imported_from={
        "format": "peft", "folder": str(folder.resolve()), "peft_version": settings.get("peft_version"),
        "base_model_name_or_path": settings.get("base_model_name_or_path"),
        "weights_sha256": hashlib.sha256((folder / PEFT_WEIGHTS_FILE).read_bytes()).hexdigest()[:16],
        "head_left_behind": left_behind})
    return save_artifact(output_dir, single_adapter_tensors(sites, {}), config)


def read_peft_config(folder: Path) -> dict:
    """The folder's adapter_config.json, or a one-line ArtifactError saying what the folder is not."""
    if not (folder / PEFT_CONFIG_FILE).is_file() or not (folder / PEFT_WEIGHTS_FILE).is_file():
        raise ArtifactError(f"{folder} is not a PEFT LoRA folder (needs {PEFT_CONFIG_FILE} and {PEFT_WEIGHTS_FILE}, "
                            "as PeftModel.save_pretrained writes them); an adapterflow artifact is a source as it is")
    try:
        settings = json.loads((folder / PEFT_CONFIG_FILE).read_text())
    except ValueError as exc:
        raise ArtifactError(f"{folder / PEFT_CONFIG_FILE} is not valid JSON ({exc}); save the adapter again") from None
    if not isinstance(settings, dict):
        raise ArtifactError(f"{folder / PEFT_CONFIG_FILE} holds no JSON object; save the adapter again")
    return settings


def lora_problem(settings: dict) -> str | None:
    """Why a PEFT config is not a plain LoRA this importer maps exactly, or None."""
    if settings.get("peft_type") != "LORA":
        return f"holds a {settings.get('peft_type')!r} adapter, not a LoRA; only LoRA folders import"
    if settings.get("use_dora"):
        return ("is a DoRA (use_dora: true), whose magnitude vector rescales W + ΔW, which is no LoRA update; "
                "retrain it without use_dora")
    if settings.get("bias", "none") != "none":
        return (f"trains the base model's biases (bias: {settings['bias']!r}), which a LoRA source cannot carry; "
                "retrain it with bias='none'")
    if saved := [m for m in settings.get("modules_to_save") or [] if m not in HEAD_MODULES]:
        return (f"saves whole modules {saved} beside its LoRA, which a LoRA source cannot carry; retrain it with "
                f"at most a classifier head ({', '.join(HEAD_MODULES)}) in modules_to_save")
    if (init := settings.get("init_lora_weights", True)) not in PLAIN_INITS:
        return (f"was initialised with init_lora_weights={init!r}, which changes the base model's weights; convert it "
                "to a plain LoRA with PEFT's save_pretrained(..., path_initial_model_for_weight_conversion=...)")
    if other := sorted(k for k, v in settings.items() if k not in UNDERSTOOD and v not in (None, False, {}, [], "")):
        return f"sets {', '.join(other)}, which make it more than a plain LoRA (W + s·B·A); save it without them"
    return None


def check_base_model(settings: dict, backbone: Backbone, folder: Path, base_model: str | None) -> None:
    """The folder's recorded base model must be `backbone` (by its last path component, or `base_model`)."""
    recorded = settings.get("base_model_name_or_path")
    if not recorded or (recorded == base_model if base_model else _short(recorded) in backbone_names(backbone)):
        return
    raise ArtifactError(f"PEFT folder {folder} was trained on base model '{recorded}', not on backbone "
                        f"'{backbone.name}'; import it with the backbone it was trained on (or pass "
                        f"base_model='{recorded}' if '{backbone.name}' is that model under another name)")


def backbone_names(backbone: Backbone) -> set[str]:
    """What `backbone` may be called in a PEFT folder: its name, the path it loaded from and its aliases."""
    package = ALIASES.get(backbone.name.lower())
    aliases = {alias for alias, target in ALIASES.items() if package is not None and target == package}
    return {_short(name) for name in (backbone.name, backbone.model.config.name_or_path, *aliases) if name}


def _short(name: str) -> str:
    """A model name without its organisation or folder ("org/All-MiniLM-L6-v2" -> "all-minilm-l6-v2")."""
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def _module_and_matrix(name: str) -> tuple[str, str | None]:
    """(module path, "lora_A" or "lora_B") of a LoRA tensor's name; (the name, None) of any other tensor."""
    stem = name.removeprefix(PEFT_PREFIX)
    module, _, matrix = stem.removesuffix(".weight").rpartition(".")
    return (module, matrix) if stem.endswith(".weight") and matrix in LORA_MATRICES else (stem, None)


def placed_loras(tensors: dict[str, torch.Tensor], settings: dict, backbone: Backbone,
                 folder: Path) -> dict[tuple[int, str], ModuleLora]:
    """{(layer, role): its LoRA} of every LoRA module of the folder, each checked against the backbone's module."""
    paths = lora_module_paths(backbone)
    task_model_prefix = f"{backbone.model.base_model_prefix}."
    matrices: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # (module, its path in the backbone) -> A and B
    unplaced: list[str] = []
    for name, tensor in tensors.items():
        module, matrix = _module_and_matrix(name)
        path = module if module in paths else module.removeprefix(task_model_prefix)
        if matrix is not None and path in paths:
            matrices.setdefault((module, path), {})[matrix] = tensor
        elif matrix is not None or module.split(".")[0] not in HEAD_MODULES:
            unplaced.append(module)
    if unplaced:
        roles = ", ".join(f"{role} ({getattr(backbone.layout, role)})" for role in get_args(LoraTarget))
        raise ArtifactError(
            f"PEFT folder {folder} has LoRA or tensors on modules that backbone '{backbone.name}' has no LoRA site "
            f"for: {', '.join(sorted(set(unplaced))[:3])} (target_modules {settings.get('target_modules')}); "
            f"adapterflow places LoRA on each layer's {roles}: retrain with target_modules among those, or import "
            "it with its own backbone")
    loras = {}
    for (module, path), pair in matrices.items():
        layer, role = paths[path]
        if set(pair) != set(LORA_MATRICES):
            raise ArtifactError(f"PEFT folder {folder} holds only {', '.join(pair)} for {module}; "
                                "save the adapter again")
        shape = backbone.linear_shape(layer, role)
        loras[layer, role] = module_lora(pair, settings, module, shape, backbone, folder)
    return loras


def module_lora(pair: dict[str, torch.Tensor], settings: dict, module: str, shape: tuple[int, int],
                backbone: Backbone, folder: Path) -> ModuleLora:
    """One module's LoRA and scale (PEFT's: alpha / r, or alpha / √r with use_rslora), checked against the
    backbone module's (out, in) `shape`."""
    a, b = pair["lora_A"], pair["lora_B"]
    out_features, in_features = shape
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_features or tuple(b.shape) != (out_features, a.shape[0]):
        raise ArtifactError(f"PEFT folder {folder}'s LoRA on {module} maps {a.shape[-1]} -> {b.shape[0]} features "
                            f"but backbone '{backbone.name}' has a {in_features} -> {out_features} module there: it "
                            "was trained on another base model; import it with that backbone")
    rank = a.shape[0]
    scale = module_alpha(settings, module) / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    return ModuleLora(a, b, scale)


def module_alpha(settings: dict, module: str) -> float:
    """The module's lora_alpha: the first alpha_pattern key that matches it, as PEFT matches them, else lora_alpha."""
    for pattern, alpha in (settings.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return alpha
    return settings["lora_alpha"]


def own_adapter_config(settings: dict, loras: dict[tuple[int, str], ModuleLora]) -> AdapterConfig:
    """The folder's LoRA as one of our configs: its largest rank, its roles, and the alpha that gives that rank
    the scale of the folder's default module (its lora_alpha itself when no module's rank or scale differs)."""
    rank = max(lora.rank for lora in loras.values())
    roles = {role for _, role in loras}
    default_rank = math.sqrt(settings["r"]) if settings.get("use_rslora") else settings["r"]
    return AdapterConfig(kind="lora", lora_rank=rank, lora_alpha=settings["lora_alpha"] * rank / default_rank,
                         lora_dropout=settings.get("lora_dropout", 0.0),
                         lora_targets=tuple(t for t in get_args(LoraTarget) if t in roles))


def site_states(loras: dict[tuple[int, str], ModuleLora], adapter: AdapterConfig, backbone: Backbone,
                settings: dict, folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{site key: lora_A, lora_B} of every site of `adapter` on `backbone`: each module's LoRA at `adapter`'s
    rank and scale, zero where the folder has none (on layers a `layers_to_transform` left out)."""
    roles = {role for _, role in loras}
    rank = max(lora.rank for lora in loras.values())
    if adapter.kind != "lora" or not roles <= set(adapter.lora_targets) or adapter.lora_rank < rank:
        raise ConfigError(f"a PEFT LoRA of rank {rank} on {sorted(roles)} imports into a LoRA config of rank at least "
                          f"{rank} whose lora_targets include those roles, not {adapter.to_dict()}")
    some_layers = settings.get("layers_to_transform") is not None
    states = {}
    for layer in range(backbone.num_layers):
        for role in adapter.lora_targets:
            lora = loras.get((layer, role))
            if lora is None and role in roles and not some_layers:
                found = sorted(i for i, r in loras if r == role)
                raise ArtifactError(f"PEFT folder {folder} has a {role} LoRA on layers {found} but backbone "
                                    f"'{backbone.name}' has {backbone.num_layers}: it was trained on another base "
                                    "model; import it with that backbone")
            states[site_key(layer, role)] = padded_state(lora, adapter, backbone.linear_shape(layer, role))
    return states


def padded_state(lora: ModuleLora | None, adapter: AdapterConfig, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    """`lora` as a LoRA of `adapter`'s rank and scale with the same ΔW (zero for None): A's extra rows and B's
    extra columns zero, the ratio of the scales folded into B."""
    out_features, in_features = shape
    a, b = torch.zeros(adapter.lora_rank, in_features), torch.zeros(out_features, adapter.lora_rank)
    if lora is not None:
        a[:lora.rank] = lora.a
        b[:, :lora.rank] = lora.b * (lora.scale / adapter.lora_scale)
    return {"lora_A": a, "lora_B": b}
