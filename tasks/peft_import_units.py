"""Prefect task of the sources stage for a source brought in as a PEFT LoRA folder: import it (or
reuse its finished import, by key) as a LoRA source artifact that fits find as they find a trained one."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from safetensors.torch import load_file

from peft_core.artifacts import WEIGHTS_FILE
from peft_core.backbones import Backbone
from peft_core.jobs import TrainingResult
from peft_core.peft_import import import_peft_lora
from peft_core.resources import ResourceMeter
from tasks.unit_specs import ImportedAdapter, UnitContext, UnitResult
from tasks.units import run_training_unit, task_run_name


def _import(spec: ImportedAdapter, backbone: Backbone, out: Path, hooks: dict) -> TrainingResult:
    with ResourceMeter() as meter:
        artifact = import_peft_lora(Path(spec.folder), backbone, spec.task_spec(), out, adapter=spec.adapter,
                                    base_model=spec.base_model)
    # its LoRA parameters where a trained source counts its adapter's trainable ones; it has no head
    size = sum(tensor.numel() for tensor in load_file(artifact / WEIGHTS_FILE).values())
    return TrainingResult({}, [], 0, meter.seconds, meter.peak_memory_mb, size, 0, artifact)


@task(name="import_peft_adapter", cache_policy=NO_CACHE, task_run_name=task_run_name("import_peft_adapter"))
def import_peft_adapter_unit(spec: ImportedAdapter, context: UnitContext) -> UnitResult:
    """Import (or reuse) a source's PEFT LoRA folder into the run's LoRA config."""
    return run_training_unit(context, spec, _import)
