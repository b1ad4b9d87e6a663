"""What an artifact's tensors are called, and which kinds of artifact there are: the one place that says so.

`artifacts.py` writes and reads an artifact folder (`adapter_config.json` + `adapter.safetensors`);
this module names what is inside. The tensors sit in sections, each a name prefix:

    sites.<site key>.<name>     per adapter site: a single adapter's state, a transfer fit's composition
    head.<name>                 a single-task model's head
    prompt.embeddings           a task prompt (PEMT's sources and targets)
    hypernetwork.<name>         a HyperFormer few-shot fit's hypernetwork, its task embedding included
    backbone.<path>             backbone overrides: values of the shared encoder's own parameters, named
                                by their path in it, that the model computes with (the LayerNorms a
                                HyperFormer or PEMT trained)
    backbone_layernorms.<path>  the same section as materialised HyperFormer adapters and HyperFormer
                                few-shot fits wrote it before; read, never written
    encoder.<name>              a full fine-tuning's whole encoder state (loaded as the encoder's state)

A joint multi-task model holds its trainable parameters under their names in the model
(`heads.<task>.…`, `hypernetwork.…`, `encoder.…`), so it has no section of its own. A bundle (a
transfer fit copied with its sources, `inference.bundle_fitted_model`) holds each source's artifact
in `sources/<source name>/`. A training checkpoint holds the trainable tensors twice, `current/`
and `best/`.

`ARTIFACT_KINDS` says, for each kind, the `method` values its config is recognised by, the job that
writes it and the function that rebuilds its model (`inference.load_fitted_model` dispatches on it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import ArtifactError
from .method_names import HYPERFORMER_TRANSFER_METHODS, MULTITASK_METHODS, TRANSFER_METHODS

# the sections of an artifact's tensor names (see above), of a checkpoint's, and a bundle's folder of sources
SITES = "sites."
HEAD = "head."
PROMPT = "prompt."
PROMPT_EMBEDDINGS = PROMPT + "embeddings"
HYPERNETWORK = "hypernetwork."
BACKBONE = "backbone."
LEGACY_BACKBONE = "backbone_layernorms."
ENCODER = "encoder."
CHECKPOINT_CURRENT = "current/"
CHECKPOINT_BEST = "best/"
SOURCES_DIR = "sources"

# the `method` of an artifact that is no config method of its own
ADAPTER = "adapter"
PROMPT_ADAPTER = "prompt_adapter"  # an adapter trained with its task prompt (a PEMT source)
MATERIALISED_ADAPTER = "hyperformer_adapter"  # one task of a HyperFormer written as a plain adapter
IMPORTED_LORA = "peft_lora"  # a Hugging Face PEFT LoRA folder taken in as a source (no task head)
FULL_FINETUNE = "full_finetune"

T = TypeVar("T")


# -- sections --------------------------------------------------------------------------------------
def under(tensors: Mapping[str, T], prefix: str) -> dict[str, T]:
    """The entries of `tensors` whose name starts with `prefix`, named without it."""
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def prefixed(tensors: Mapping[str, T], prefix: str) -> dict[str, T]:
    """`tensors` with `prefix` before every name (the inverse of `under`)."""
    return {prefix + name: value for name, value in tensors.items()}


def site_prefix(key: str) -> str:
    return f"{SITES}{key}."


def site_tensors(tensors: Mapping[str, T], key: str) -> dict[str, T]:
    """One adapter site's state ({name: tensor}) among an artifact's tensors."""
    return under(tensors, site_prefix(key))


def single_adapter_tensors(sites: Mapping[str, Mapping[str, T]], head: Mapping[str, T], prompt: T | None = None,
                           backbone: Mapping[str, T] | None = None) -> dict[str, T]:
    """A single-adapter artifact's tensors: each site's state ({site key: state}), the head's, the
    prompt's embeddings if any and the backbone overrides ({path in the encoder: parameter}) if any."""
    tensors: dict[str, T] = {}
    for key, state in sites.items():
        tensors |= prefixed(state, site_prefix(key))
    tensors |= prefixed(head, HEAD)
    if prompt is not None:
        tensors[PROMPT_EMBEDDINGS] = prompt
    return tensors | backbone_override_tensors(backbone or {})


def backbone_override_tensors(params: Mapping) -> dict:
    """The artifact tensors that carry `params` ({path in the encoder: parameter}) as backbone overrides."""
    return prefixed({path: p.detach().clone() for path, p in params.items()}, BACKBONE)


def backbone_overrides(tensors: Mapping[str, T]) -> dict[str, T]:
    """{path in the encoder: value} of the backbone overrides among an artifact's tensors (most have none)."""
    return under(tensors, LEGACY_BACKBONE) | under(tensors, BACKBONE)


def bundled_source(folder: Path, name: str) -> Path:
    """Where a bundle keeps its copy of source `name`."""
    return Path(folder) / SOURCES_DIR / name


# -- kinds -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactKind:
    """A kind of artifact: the `method`s its config may name, the jobs that write it and the function
    that rebuilds its model, each `"module:function"` of peft_core (imported when first used, so the
    jobs can import this module). The loader is called `(folder, backbone, spec)`; a `joint` model's
    (several tasks) `(folder, backbone)`; one that `stacks_sources` `(folder, backbone, spec, source
    folders or None for the recorded ones)`."""

    name: str
    methods: tuple[str, ...]
    written_by: tuple[str, ...]
    loaded_by: str
    joint: bool = False
    stacks_sources: bool = False

    def loader(self) -> Callable:
        return _function(self.loaded_by)

    def writers(self) -> list[Callable]:
        return [_function(name) for name in self.written_by]


def _function(name: str) -> Callable:
    module, function = name.split(":")
    return getattr(importlib.import_module(f".{module}", __package__), function)


ARTIFACT_KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("adapter", (ADAPTER, PROMPT_ADAPTER, MATERIALISED_ADAPTER, IMPORTED_LORA),
                 ("adapter_jobs:train_adapter", "multitask:materialise_adapter", "peft_import:import_peft_lora"),
                 "adapter_jobs:load_adapter_model"),
    ArtifactKind("full_finetune", (FULL_FINETUNE,), ("full_finetune:train_full_finetune",),
                 "full_finetune:load_full_finetune_model"),
    ArtifactKind("transfer", TRANSFER_METHODS, ("transfer:fit_transfer",), "transfer:load_transfer_model",
                 stacks_sources=True),
    ArtifactKind("multitask", MULTITASK_METHODS, ("multitask:train_multitask",), "multitask:load_multitask_model",
                 joint=True),
    ArtifactKind("hyperformer_transfer", HYPERFORMER_TRANSFER_METHODS,
                 ("hyperformer.few_shot:fit_hyperformer_transfer",), "hyperformer.few_shot:load_hyperformer_transfer"),
)
KIND_OF_METHOD: dict[str, ArtifactKind] = {method: kind for kind in ARTIFACT_KINDS for method in kind.methods}


def artifact_kind(config: dict, folder: Path) -> ArtifactKind:
    """The kind of the artifact in `folder` (its `config`), or an ArtifactError naming the methods known."""
    kind = KIND_OF_METHOD.get(config.get("method"))
    if kind is None:
        raise ArtifactError(f"{folder} holds a {config.get('method')!r} artifact, which has no loader; "
                            f"known: {', '.join(KIND_OF_METHOD)}")
    return kind
