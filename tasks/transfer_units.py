"""Prefect tasks of the transfer stage: fit a combination of frozen sources for a target, and the
full fine-tuning baseline; and the check that a transfer stage run alone has its sources."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from peft_core.backbones import Backbone
from peft_core.compositions import get_method
from peft_core.errors import ConfigError
from peft_core.full_finetune import train_full_finetune
from peft_core.transfer import fit_transfer
from peft_core.weights_plot import WEIGHTS_PLOT, plot_weights_heatmap
from tasks.unit_specs import AdapterUnit, FullFinetune, ImportedAdapter, TransferFit, UnitContext, UnitResult
from tasks.units import Unit, find_reusable_unit, run_training_unit, task_run_name, unit_files


def require_finished_sources(context: UnitContext, sources: Sequence[AdapterUnit | ImportedAdapter]) -> None:
    """A clear error naming the source units of `sources` that MLflow has no reusable finished run of."""
    missing = [s for s in sources if find_reusable_unit(context, s.backbone, s.key, Unit.of(s).label) is None]
    if missing:
        kinds = sorted({_source_kind(s) for s in missing})
        names = ", ".join(sorted({s.task if s.seed is None else f"{s.task} (seed {s.seed})" for s in missing}))
        raise ConfigError(f"no source {' or '.join(kinds)} in MLflow ({context.tracking.uri}) for: {names}; "
                          "train or import them first with `adapterflow run CONFIG --stage sources`")


def _source_kind(source: AdapterUnit | ImportedAdapter) -> str:
    if isinstance(source, ImportedAdapter):
        return "imported PEFT LoRA"
    return "prompt adapter (for PEMT)" if source.with_prompt else "adapter"


@task(name="fit_transfer", cache_policy=NO_CACHE, task_run_name=task_run_name("fit_transfer"))
def fit_transfer_unit(spec: TransferFit, context: UnitContext) -> UnitResult:
    """Fit the spec's method, a combination of its frozen source units, on the target (or reuse a finished fit)."""
    if not spec.sources:
        raise ConfigError(f"target '{spec.task}' has no source adapters for method '{spec.method}'; "
                          "add tasks to `sources` (PEMT excludes the target itself)")

    def fit(spec: TransferFit, backbone: Backbone, out: Path, hooks: dict):
        chooses = get_method(spec.method).choose is not None and spec.source_data
        result = fit_transfer(backbone, spec.data.task_spec(), spec.data.splits(), spec.method,
                              [unit_files(context, source) for source in spec.sources], spec.train, out,
                              method_options=spec.options, learning_rate=spec.train.learning_rate,
                              head_from=spec.head_from,
                              source_examples=[d.splits().train for d in spec.source_data] if chooses else None,
                              **hooks)
        report = result.extra["weights"]
        plot_weights_heatmap(report, report["sources"], out / WEIGHTS_PLOT, title=f"{spec.method} → {spec.task}",
                             method=spec.method)
        result.extra["json_artifacts"] = {"weights.json": report}
        return result

    return run_training_unit(context, spec, fit)


def _finetune(spec: FullFinetune, backbone: Backbone, out: Path, hooks: dict):
    return train_full_finetune(backbone, spec.data.task_spec(), spec.data.splits(), spec.train, out, **hooks)


@task(name="full_finetune", cache_policy=NO_CACHE, task_run_name=task_run_name("full_finetune"))
def full_finetune_unit(spec: FullFinetune, context: UnitContext) -> UnitResult:
    """The full fine-tuning baseline on a target; its artifact is the whole encoder and head."""
    return run_training_unit(context, spec, _finetune)
