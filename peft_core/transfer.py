"""Stage 2 of two-stage transfer (METHODS §1): combine frozen source adapters for a target task.

    result = fit_transfer(backbone, get_task("rte"), splits, "scalearn", [mnli_dir, rte_dir],
                          TrainConfig(), Path("out/rte-scalearn"))
    result.extra["weights"]  # {"sources", "sites", "weights": sites × sources, "details"} (+ "choice")

The K source artifacts are stacked into one frozen bank per site (`AdapterBank`, or `LoraBank` for
LoRA sources: every source of a fit is of one kind and shape); the method's
compositions, a new head and (PEMT) the target prompt and the backbone's LayerNorms are all that
train. The artifact holds those trainable tensors only (the LayerNorms as backbone overrides,
`backbone.<path>`), plus the list of sources (name, folder, fingerprint) needed to rebuild the
model (`load_transfer_model`) and the method's options; the weights report is in the result, for
the caller to log or draw (`weights_plot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .adapter_kinds import ADAPTER_KINDS, adapter_bank, placement_of
from .adapters import StackedAdapters
from .artifact_layout import BACKBONE, HEAD, PROMPT, PROMPT_EMBEDDINGS, prefixed, site_prefix, site_tensors, under
from .artifacts import (
    artifact_config, load_artifact, read_artifact_config, save_artifact, task_entries, weights_fingerprint,
)
from .backbones import Backbone
from .compositions import SourceTexts, TransferMethod, get_method
from .compositions.tracking import TrackedComposition
from .configs import AdapterConfig, TrainConfig
from .data.types import DatasetSplits, Example
from .errors import ArtifactError, ConfigError
from .layernorms import layernorm_parameters
from .method_names import text_output_problem
from .model import AdapterModel
from .sites import AdapterSite
from .prompts import description_embeddings
from .jobs import TrainingResult, encode_splits, fit_single_task, job_model
from .task_specs import TaskSpec
from .text_model import adapter_model
from .training import StepCallback


# -- sources -----------------------------------------------------------------------------------
@dataclass
class SourceAdapter:
    """One frozen source: its task name, folder, config and tensors."""

    name: str
    directory: Path
    config: dict
    tensors: dict[str, torch.Tensor]
    fingerprint: str  # digest of the weights file: a changed source is detected on reload

    @property
    def adapter_config(self) -> AdapterConfig:
        return AdapterConfig(**self.config["adapter"])

    @property
    def task(self) -> str:
        """The task it was trained on (its name may carry a suffix when two sources share one)."""
        return self.config.get("task", {}).get("name", self.name)

    @property
    def prompt(self) -> torch.Tensor | None:
        return self.tensors.get(PROMPT_EMBEDDINGS)

    def site_state(self, key: str) -> dict[str, torch.Tensor]:
        state = site_tensors(self.tensors, key)
        if not state:
            raise ArtifactError(f"source '{self.name}' ({self.directory}) has no adapter for site {key}; "
                                "it was trained for another model layout, retrain it")
        return state

    def describe(self) -> dict:
        return {"name": self.name, "adapter_dir": str(self.directory.resolve()), "fingerprint": self.fingerprint}


def load_sources(source_dirs: Sequence[Path], backbone: Backbone, target: str) -> list[SourceAdapter]:
    """Load and check every source: same backbone, adapter kind and shape (bottleneck: placement, reduction
    factor and activation; LoRA: rank, alpha and targets) as the first."""
    if not source_dirs:
        raise ConfigError(f"target {target} has no source adapters; train source adapters first and pass "
                          "their folders (check the config's sources and transfer.source_set)")
    sources: list[SourceAdapter] = []
    for directory in map(Path, source_dirs):
        config = read_artifact_config(directory)
        name = config.get("task", {}).get("name", directory.name)
        if not config.get("adapter"):
            raise ArtifactError(f"source '{name}' ({directory}) is a '{config.get('method')}' artifact, not an "
                                "adapter; pass folders written by train_adapter")
        try:
            config, tensors = load_artifact(directory, backbone)
        except ArtifactError as exc:
            raise ArtifactError(f"source '{name}' for target {target}: {exc}") from None
        source = SourceAdapter(_unique(name, sources), directory, config, tensors, weights_fingerprint(directory))
        _check_stackable(source, sources)
        sources.append(source)
    return sources


def _unique(name: str, sources: list[SourceAdapter]) -> str:
    """The task name, or `name_<position>` when an earlier source already has it."""
    return name if name not in {s.name for s in sources} else f"{name}_{len(sources) + 1}"


def _check_stackable(source: SourceAdapter, earlier: list[SourceAdapter]) -> None:
    """Sources share one bank per site: adapters of one kind, shape and placement, without a LayerNorm after."""
    this = source.adapter_config
    if this.layer_norm_after:
        raise ArtifactError(f"source '{source.name}' ({source.directory}) has a LayerNorm after its adapter, which "
                            "transfer methods do not stack; retrain it with adapter layer_norm_after off")
    if not earlier:
        return
    first = earlier[0].adapter_config
    for field in ("kind", *ADAPTER_KINDS[first.kind].stacked_settings):
        if getattr(this, field) != getattr(first, field):
            raise ArtifactError(
                f"source '{source.name}' ({source.directory}) has adapter {field} {getattr(this, field)!r} but "
                f"source '{earlier[0].name}' has {getattr(first, field)!r}; sources are stacked, so retrain them "
                "with one adapter config"
            )


def frozen_bank(sources: Sequence[SourceAdapter], site: AdapterSite, adapter: AdapterConfig) -> StackedAdapters:
    """The K source adapters of one site stacked in one bank, with no gradients."""
    bank = adapter_bank(len(sources), site.in_features, site.out_features, adapter)
    for j, source in enumerate(sources):
        bank.load_adapter_state(j, source.site_state(site.key))
    return bank.requires_grad_(False)


# -- the model ---------------------------------------------------------------------------------
def build_transfer_model(backbone: Backbone, spec: TaskSpec, sources: Sequence[SourceAdapter],
                         method: TransferMethod, options: dict | None = None) -> AdapterModel:
    adapter = sources[0].adapter_config
    if backbone.output == "text" and (problem := text_output_problem(method.name)):
        raise ConfigError(problem)
    if method.uses_prompts:
        missing = [s for s in sources if s.prompt is None]
        if missing:
            names = ", ".join(f"'{s.name}' ({s.directory})" for s in missing)
            raise ConfigError(
                f"method '{method.name}' needs sources trained with task prompts, but {names} has none; add "
                "'pemt' to the config's methods so sources train with prompts (train_adapter(..., with_prompt=True))"
            )
    model = adapter_model(backbone, placement_of(adapter))
    try:
        banks = {site.key: frozen_bank(sources, site, adapter) for site in model.sites}
        compositions = dict(zip(banks, method.compositions(list(banks.values()), adapter, options)))
        model.set_compositions(lambda site: compositions[site.key])
        if any(c.trains_backbone_layernorms for c in compositions.values()):
            model.override_backbone(layernorm_parameters(backbone), trainable=True)
        model.add_head(spec)
        if method.uses_prompts:
            model.prompt = method.target_prompt(description_embeddings(backbone, spec.description),
                                                [s.prompt for s in sources])
    except Exception:
        model.detach()
        raise
    return model


def start_head_from(model: AdapterModel, spec: TaskSpec, sources: Sequence[SourceAdapter], name: str) -> None:
    """Copy source `name`'s task head into the target's new head."""
    source = next((s for s in sources if s.name == name), None)
    if source is None:
        raise ConfigError(f"head_from names source '{name}', which is not among the sources "
                          f"({', '.join(s.name for s in sources)}); name one of them or start a new head")
    saved = under(source.tensors, HEAD)
    if not saved:
        raise ArtifactError(f"head_from names source '{name}' ({source.directory}), which has no task head (a "
                            f"'{source.config['method']}' artifact); start a new head")
    head = model.heads[spec.name]
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    if {k: tuple(v.shape) for k, v in saved.items()} != shapes:
        raise ArtifactError(f"source '{name}' ({source.directory}) has a head for another label set than task "
                            f"{spec.name}'s; start a new head or name the target's own adapter")
    head.load_state_dict(saved)


def transfer_parameters(model: AdapterModel, task: str) -> dict[str, nn.Parameter]:
    """Every trainable tensor under its artifact name: `sites.{layer}.{position}.{name}`,
    `head.{name}`, `prompt.embeddings`, `backbone.{path}` (the backbone's LayerNorms, where they
    train). A Parameter shared by several sites (ScaLearn++'s ω) appears once, under the first site."""
    named: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    groups = [(site_prefix(site.key), site.composition) for site in model.sites]
    groups += [(HEAD, model.heads[task])] + ([(PROMPT, model.prompt)] if model.prompt is not None else [])
    for prefix, module in groups:
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named[prefix + name] = p
    layernorms = prefixed(layernorm_parameters(model.backbone_info), BACKBONE)
    return named | {name: p for name, p in layernorms.items() if p.requires_grad}


def reset_weight_statistics(model: AdapterModel) -> None:
    for site in model.sites:
        if isinstance(site.composition, TrackedComposition):
            site.composition.reset_statistics()


def weights_report(model: AdapterModel, sources: Sequence[str]) -> dict:
    """Per site, the weight of each source (ω mean, attention, gate) plus each method's details.

    `weights` is a sites × sources matrix (a row is None where a tracked method saw no
    evaluation pass); `details` holds the rest of each site's report (e.g. full ω vectors). The
    fit adds `choice` for a method that chose among its sources (AdapterSoup: the similarities).
    """
    reports = {site.key: site.composition.report() for site in model.sites}
    return {
        "sources": list(sources),
        "sites": list(reports),
        "weights": [r.get("weights") for r in reports.values()],
        "details": {key: {k: v for k, v in r.items() if k != "weights"} for key, r in reports.items()},
    }


# -- the job -----------------------------------------------------------------------------------
def fit_transfer(
    backbone: Backbone,
    spec: TaskSpec,
    splits: DatasetSplits,
    method: str,
    source_dirs: list[Path],
    train: TrainConfig,
    output_dir: Path,
    *,
    method_options: dict | None = None,
    learning_rate: float | Literal["published"] = "published",
    head_from: str | None = None,
    source_examples: Sequence[Sequence[Example]] | None = None,
    checkpoint_dir: Path | None = None,
    on_epoch=None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Train `method`'s combination of the frozen sources (and a new head) on the target `spec`.

    `source_examples`: each source's training examples, in the order of `source_dirs`, for a
    method that chooses among its sources by them (AdapterSoup's default, `select: similarity`);
    the choice is in the artifact (`source_choice`) and in `result.extra["weights"]["choice"]`.

    `head_from` names a source whose task head (same task, same labels) the target head starts
    from, instead of a new random one: in ScaLearn's setting the target's own adapter, trained
    on the same examples.

    Everything trains at one rate, the new head included, as one optimizer does in the papers'
    code: `learning_rate`, or for "published" the method's own (ScaLearn 6e-3, AdapterFusion
    5e-5, PEMT 3e-4; `train.learning_rate` for averaging, where only the head trains). The
    artifact and the result record the rate that ran. The reported
    weights (`result.extra["weights"]`) for fusion and PEMT are averaged over the final
    evaluation (validation and test sets) of the best epoch's model.
    """
    transfer_method = get_method(method)
    train = transfer_method.train_config(train, learning_rate)
    sources = load_sources(source_dirs, backbone, spec.name)
    if source_examples is not None and len(source_examples) != len(sources):
        raise ConfigError(f"fit_transfer got training examples of {len(source_examples)} source(s) for "
                          f"{len(sources)} source adapter(s); give one list per source, in source order")
    method_options, choice = transfer_method.choose_sources(method_options, SourceTexts(
        backbone, spec.name, splits.train, [s.name for s in sources], [s.task for s in sources], source_examples,
        train.max_length))
    with job_model(train, lambda: build_transfer_model(backbone, spec, sources, transfer_method,
                                                       method_options)) as model:
        if head_from is not None:
            start_head_from(model, spec, sources, head_from)
        data = encode_splits(spec, splits, backbone, train.max_length)
        run = fit_single_task(model, spec, data, train, before_evaluation=reset_weight_statistics,
                              checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, on_step=on_step)
        report = weights_report(model, [s.name for s in sources]) | ({"choice": choice} if choice else {})
        config = artifact_config(method, backbone, sources[0].adapter_config, train.to_dict(), run.metrics,
                                 **task_entries(spec, splits.digest()), best_epoch=run.fit.best_epoch,
                                 sources=[s.describe() for s in sources],
                                 method_options=transfer_method.options_to_record(method_options),
                                 **({"head_from": head_from} if head_from is not None else {}),
                                 weights={k: report[k] for k in ("sources", "sites", "weights")},
                                 **({"source_choice": choice} if choice else {}))
        tensors = {k: p.detach() for k, p in transfer_parameters(model, spec.name).items()}
        save_artifact(output_dir, tensors, config)
    return run.result(output_dir, {"method": method, "sources": [s.describe() for s in sources], "weights": report})


def load_transfer_model(artifact_dir: Path, backbone: Backbone, spec: TaskSpec,
                        source_dirs: Sequence[Path] | None = None) -> AdapterModel:
    """Rebuild a fitted transfer model from its artifact and its (unchanged) source folders:
    the recorded ones, or `source_dirs` (copies of them, in the recorded order)."""
    config, tensors = load_artifact(artifact_dir, backbone)
    described = config.get("sources") or []
    folders = source_dirs if source_dirs is not None else [Path(s["adapter_dir"]) for s in described]
    sources = load_sources(folders, backbone, spec.name)
    for source, recorded in zip(sources, described):
        if source.fingerprint != recorded["fingerprint"]:
            raise ArtifactError(f"source '{source.name}' ({source.directory}) changed since transfer model "
                                f"{artifact_dir} was fitted on it; re-run the transfer stage")
    method = get_method(config["method"])
    model = build_transfer_model(backbone, spec, sources, method, method.recorded_options(config.get("method_options")))
    model.load_saved_parameters(transfer_parameters(model, spec.name), tensors, artifact_dir,
                                f"method '{config['method']}' on task {spec.name}: re-run the transfer stage")
    return model
