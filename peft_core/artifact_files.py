"""An artifact folder's files read and checked without torch: `adapter_config.json` and the
header of `adapter.safetensors`.

Finding a unit and checking that its files will load (`adapterflow predict`'s lookup, an import's
check) needs no tensors, so it runs before, or beside, the seconds torch and transformers take to
import. Writing and loading the tensors is `artifacts`'.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from .errors import ArtifactError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter.safetensors"
FORMAT_VERSION = 1


def read_artifact_config(folder: Path) -> dict:
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ArtifactError(
            f"{folder} is not a complete adapter artifact (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "re-run the stage that trains it"
        )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except ValueError as exc:  # not JSON, or not text
        raise ArtifactError(f"{folder / CONFIG_FILE} is not valid JSON ({exc}); re-run the stage that trains it") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{folder / CONFIG_FILE} holds no JSON object; re-run the stage that trains it")
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{folder} is in artifact format {config.get('format_version')} (library "
                            f"{config.get('library_version')}), this library reads format {FORMAT_VERSION}; re-run "
                            "the stage that trains it, or load it with the library version that wrote it")
    return config


def check_artifact_files(folder: Path) -> dict[Path, dict]:
    """{artifact folder: its config} of `folder` and of every artifact bundled in it (a fit's
    sources), each with a readable config and a weights file whose header and size agree, which is
    what loading it needs of the files; an `ArtifactError` naming the first file that does not."""
    folder = Path(folder)
    configs = {folder: read_artifact_config(folder)}
    for config_file in sorted(folder.rglob(f"*/{CONFIG_FILE}")):
        configs[config_file.parent] = read_artifact_config(config_file.parent)
    for artifact in configs:
        try:
            # The header is checked on opening, whatever the framework; numpy's needs no torch.
            with safe_open(artifact / WEIGHTS_FILE, "numpy"):
                pass
        except (SafetensorError, OSError) as exc:
            reason = str(exc).removeprefix("Error while deserializing header: ")
            raise ArtifactError(f"{artifact / WEIGHTS_FILE} cannot be loaded ({reason}: damaged or cut short); "
                                "re-run the stage that trains it") from None
    return configs


def artifact_output(config: dict) -> str:
    """The output form ("head" or "text") an artifact's model answers in."""
    return config.get("task_output", "head")


def fitted_tasks(folder: Path) -> list[str]:
    """The tasks a fitted folder predicts: its own, or every task of a joint model."""
    config = read_artifact_config(folder)
    return [e["spec"]["name"] for e in config["tasks"]] if "tasks" in config else [config["task"]["name"]]
