"""`adapterflow export-peft`: a fitted LoRA unit of the store as a Hugging Face PEFT LoRA folder."""

from __future__ import annotations

from pathlib import Path

from flows.config import PipelineConfig
from flows.store import tracking_for
from peft_core.artifacts import read_artifact_config
from peft_core.backbones import load_backbone
from peft_core.errors import ConfigError
from peft_core.peft_export import NOTE_FILE, export_peft_lora
from tasks.fitted_units import resolve_unit


def export_unit_to_peft(cfg: PipelineConfig, unit: str, folder: Path, overwrite: bool) -> Path:
    """Write the single fitted unit `unit` names to `folder`: a new or empty folder, or with `overwrite`
    an earlier PEFT export of ours (never another folder, whose files would be lost)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not overwrite:
            raise ConfigError(f"{folder} exists and is not empty; pass a new folder, or --overwrite to replace an "
                              "earlier PEFT export")
        if not (folder / NOTE_FILE).is_file():
            raise ConfigError(f"{folder} is not a PEFT export of adapterflow (it has no {NOTE_FILE}); --overwrite "
                              "replaces only those, so pass a new folder")
    targets = resolve_unit(tracking_for(cfg), unit, cfg.home_dir() / "model-cache")
    if len(targets) != 1:
        raise ConfigError(f"unit {unit!r} names {len(targets)} fitted models ({', '.join(targets)}); export one "
                          "fitted LoRA unit at a time")
    (target,) = targets.values()
    fitted = target[0] if isinstance(target, tuple) else target  # (folder, task): a logged model's target
    # on the backbone the unit was fitted on, as `predict` does (the config's may be another)
    backbone = read_artifact_config(Path(fitted))["backbone"]["name"]
    return export_peft_lora(Path(fitted), load_backbone(backbone), folder)
