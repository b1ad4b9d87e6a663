"""Prefect tasks of the transfer stage: fit a combination of frozen sources for a target, the
full fine-tuning baseline, and finding the source adapters of earlier runs in MLflow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from peft_core.backbones import load_backbone
from peft_core.compositions import get_method
from peft_core.configs import TrainConfig
from peft_core.errors import ConfigError
from peft_core.full_finetune import train_full_finetune
from peft_core.transfer import fit_transfer
from peft_core.weights_plot import WEIGHTS_PLOT, plot_weights_heatmap
from tasks.adapter_units import adapter_unit_key
from tasks.keys import unit_key
from tasks.prepared_data import load_splits, prepared_spec
from tasks.tracking import Tracking, download_unit_artifact
from tasks.units import ARTIFACT_PATH, find_reusable_unit, run_training_unit


def find_source_units(cfg: PipelineConfig, prepared_sources: dict[str, dict], seed: int, with_prompt: bool) -> dict[str, dict]:
    """The finished source adapters of this config in MLflow, or a clear error naming what is missing."""
    tracking = Tracking.from_config(cfg)
    found, missing = {}, []
    for name, prepared in prepared_sources.items():
        key = adapter_unit_key(cfg, prepared, seed, with_prompt, "source")
        run = find_reusable_unit(cfg, tracking, key, f"sources/{name}")
        if run is None:
            missing.append(name)
            continue
        run_id = run.data.tags.get("artifact_run_id", run.info.run_id)
        folder = download_unit_artifact(tracking, run_id, ARTIFACT_PATH, cfg.home_dir() / "artifact-cache")
        found[name] = {"task": name, "unit_key": key, "run_id": run_id, "artifact_dir": str(folder)}
    if missing:
        kind = "prompt adapter (for PEMT)" if with_prompt else "adapter"
        raise ConfigError(
            f"no source {kind} in MLflow ({tracking.uri}) for: {', '.join(missing)} (seed {seed}); "
            "train them first with `adapterflow run CONFIG --stage sources`"
        )
    return found


def transfer_train_config(cfg: PipelineConfig, prepared: dict, method: str, seed: int) -> TrainConfig:
    """The settings a fit of `method` on `prepared` runs with: its effective learning rate, resolved precision."""
    return get_method(method).train_config(target_train_config(cfg, prepared, seed), cfg.transfer.learning_rate_for(method))


def target_train_config(cfg: PipelineConfig, prepared: dict, seed: int) -> TrainConfig:
    """`training.targets` for a fit on the target `prepared`, its step budget resolved for its sample."""
    return cfg.training.train_config("target", seed, prepared["sizes"]["train"])


def transfer_unit_key(cfg: PipelineConfig, prepared: dict, method: str, source_units: list[dict], seed: int) -> str:
    return unit_key("transfer", backbone=cfg.backbone, task=prepared["task"], data=prepared["digest"], method=method,
                    sources=[u["unit_key"] for u in source_units], train=transfer_train_config(cfg, prepared, method, seed).to_dict(),
                    options=cfg.transfer.options_for(method), head_from=cfg.transfer.head_from(method, prepared["task"]))


@task(name="fit_transfer", cache_policy=NO_CACHE, task_run_name="fit_transfer {prepared[task]}/{method} seed {seed}")
def fit_transfer_unit(cfg: PipelineConfig, prepared: dict, method: str, source_units: list[dict], seed: int,
                      parent_run_id: str | None, source_data: list[dict] | None = None) -> dict:
    """Fit `method`'s combination of the frozen `source_units` on the target (or reuse a finished fit).
    `source_data`: the prepared data each source adapter was trained on (in the same order), which a
    method that chooses among its sources by their training examples reads (AdapterSoup)."""
    spec = prepared_spec(prepared)
    if not source_units:
        raise ConfigError(f"target '{spec.name}' has no source adapters for method '{method}'; "
                          "add tasks to `sources` (PEMT excludes the target itself)")
    train_cfg = transfer_train_config(cfg, prepared, method, seed)
    options = cfg.transfer.options_for(method)
    head_from = cfg.transfer.head_from(method, spec.name)

    def train(out: Path, checkpoint: Path, progress):
        chooses = get_method(method).choose is not None and source_data is not None
        result = fit_transfer(load_backbone(cfg.backbone), spec, load_splits(prepared["folder"]), method,
                              [Path(u["artifact_dir"]) for u in source_units], train_cfg, out,
                              method_options=options, learning_rate=train_cfg.learning_rate, head_from=head_from,
                              source_examples=[load_splits(d["folder"]).train for d in source_data] if chooses else None,
                              checkpoint_dir=checkpoint, on_epoch=progress.on_epoch, on_step=progress.on_step)
        report = result.extra["weights"]
        plot_weights_heatmap(report, report["sources"], out / WEIGHTS_PLOT, title=f"{method} → {spec.name}",
                             method=method)
        result.extra["json_artifacts"] = {"weights.json": report}
        return result

    params = {"method": method, "sources": [u["task"] for u in source_units], "data_digest": prepared["digest"],
              "seed": seed, "training": train_cfg.to_dict(), "options": options, "sizes": prepared["sizes"],
              "head_from": head_from or "new"}
    return run_training_unit(cfg, parent_run_id, stage="transfer", task=spec.name, method=method,
                             unit_key=transfer_unit_key(cfg, prepared, method, source_units, seed),
                             params=params, train=train, seed=seed, datasets=[prepared]).to_dict()


def full_finetune_train_config(cfg: PipelineConfig, prepared: dict, seed: int) -> TrainConfig:
    """The target settings at `training.full_finetune_learning_rate`."""
    return dataclasses.replace(target_train_config(cfg, prepared, seed),
                               learning_rate=cfg.training.full_finetune_learning_rate)


def full_finetune_unit_key(cfg: PipelineConfig, prepared: dict, seed: int) -> str:
    return unit_key("full_finetune", backbone=cfg.backbone, task=prepared["task"], data=prepared["digest"],
                    train=full_finetune_train_config(cfg, prepared, seed).to_dict())


@task(name="full_finetune", cache_policy=NO_CACHE, task_run_name="full_finetune {prepared[task]} seed {seed}")
def full_finetune_unit(cfg: PipelineConfig, prepared: dict, seed: int, parent_run_id: str | None) -> dict:
    """The full fine-tuning baseline on a target; its artifact is the whole encoder and head."""
    spec = prepared_spec(prepared)
    train_cfg = full_finetune_train_config(cfg, prepared, seed)

    def train(out: Path, checkpoint: Path, progress):
        return train_full_finetune(load_backbone(cfg.backbone), spec, load_splits(prepared["folder"]),
                                   train_cfg, out, checkpoint_dir=checkpoint,
                                   on_epoch=progress.on_epoch, on_step=progress.on_step)

    key = full_finetune_unit_key(cfg, prepared, seed)
    params = {"data_digest": prepared["digest"], "seed": seed, "training": train_cfg.to_dict()}
    return run_training_unit(cfg, parent_run_id, stage="transfer", task=spec.name, method="full_finetune",
                             unit_key=key, params=params, train=train, seed=seed, datasets=[prepared]).to_dict()
