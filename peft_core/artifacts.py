"""Adapter artifacts: a folder of `adapter_config.json` + `adapter.safetensors` (no pickle).

The config records what the weights only make sense with: the method and placement, the
bottleneck settings, the backbone's name and fingerprint, the task spec and label names, the
training settings, the data digest and the library version. Loading checks the backbone. Reading
and checking the files without torch is `artifact_files`'; what the tensors are called, and which
kinds of artifact there are, is `artifact_layout`'s.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .artifact_files import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, artifact_output, read_artifact_config
from .backbones import Backbone
from .checkpoints import atomic_directory_write
from .configs import AdapterConfig
from .errors import ArtifactError
from .task_specs import TaskSpec

LIBRARY_VERSION = "0.1.0"


def artifact_config(method: str, backbone: Backbone, adapter: AdapterConfig | None, training: dict | None,
                    metrics: dict, **entries) -> dict:
    """An artifact's config: what every artifact records, plus the job's own `entries` (its task or
    tasks, the data digest, the sources, the selected epoch...). A text-to-text model's records its
    `task_output` (a model of task heads, the default, records none)."""
    output = {"task_output": backbone.output} if backbone.output != "head" else {}
    return {"method": method, "adapter": adapter.to_dict() if adapter else None, "backbone": backbone.describe(),
            "training": training, "metrics": metrics, **output, **entries}


def task_entries(spec: TaskSpec, data_digest: str | None) -> dict:
    """The `artifact_config` entries of a single-task artifact: its whole task spec (so the artifact
    predicts without the config that declared the task) and the digest of its data."""
    return {"task": spec.to_json(), "data_digest": data_digest}


def joint_task_specs(config: dict) -> list[TaskSpec]:
    """The task specs a joint multi-task artifact's config records, in its order."""
    return [TaskSpec.from_json(entry["spec"]) for entry in config["tasks"]]


def save_artifact(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write the folder atomically: a reader sees either nothing or the complete artifact."""
    full = {"format_version": FORMAT_VERSION, "library_version": LIBRARY_VERSION, **config}

    def write(tmp: Path) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))

    atomic_directory_write(Path(folder), write)
    return Path(folder)


def weights_fingerprint(folder: Path) -> str:
    """A digest of an artifact's weights file: a changed artifact is told apart on reload."""
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]


def check_compatible(config: dict, folder: Path, backbone: Backbone, placement: str | None = None) -> None:
    """Raise a clear error when an artifact was made for another backbone or placement."""
    if (output := artifact_output(config)) != backbone.output:
        raise ArtifactError(f"adapter {folder} was trained for task_output: {output}, but backbone '{backbone.name}' is "
                            f"loaded for {backbone.output}; load it with load_backbone(..., output={output!r})")
    made_for = config.get("backbone", {})
    if made_for.get("fingerprint") != backbone.fingerprint:
        raise ArtifactError(
            f"adapter {folder} was trained on backbone '{made_for.get('name')}' "
            f"(fingerprint {made_for.get('fingerprint')}), not on '{backbone.name}' "
            f"(fingerprint {backbone.fingerprint}); retrain it on this backbone or use its backbone"
        )
    if placement is not None and config.get("adapter", {}).get("placement") != placement:
        raise ArtifactError(
            f"adapter {folder} uses placement '{config.get('adapter', {}).get('placement')}', "
            f"this model needs '{placement}'; retrain it with adapter.placement: {placement}"
        )


def load_artifact(folder: Path, backbone: Backbone, placement: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an artifact checked against `backbone` (and `placement` if given)."""
    config = read_artifact_config(folder)
    check_compatible(config, Path(folder), backbone, placement)
    return config, load_file(Path(folder) / WEIGHTS_FILE)
