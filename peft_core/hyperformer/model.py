"""A backbone with hypernetwork-generated houlsby adapters and one head per task (HyperFormer)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..artifact_layout import single_adapter_tensors
from ..artifacts import joint_task_specs, load_artifact, read_artifact_config
from ..backbones import Backbone
from ..configs import AdapterConfig
from ..errors import ArtifactError
from ..method_names import HYPERFORMER_VARIANTS
from ..model import AdapterModel, ModelOutput
from ..task_specs import TaskSpec
from .composition import GeneratedAdapters, HyperAdapter
from .counting import hyperformer_parameter_count
from .hypernetwork import HyperNetConfig, HyperNetwork
from .layernorms import layernorm_parameters


class HyperFormerModel(AdapterModel):
    """Trainable: the hypernetwork (with its embeddings), the backbone's LayerNorms, the heads.

    The placement is always houlsby with a LayerNorm after each adapter, whatever
    `adapter.placement` says; `adapter` gives the reduction factor and activation.
    The backbone's LayerNorms are overridden (trained in place) and put back by `detach()`.
    """

    def __init__(self, backbone: Backbone, specs: list[TaskSpec], adapter: AdapterConfig,
                 config: HyperNetConfig = HyperNetConfig()):
        super().__init__(backbone, "houlsby")
        self.adapter_config = replace(adapter, placement="houlsby", layer_norm_after=True)
        self.hypernetwork = HyperNetwork([s.name for s in specs], backbone.num_layers, backbone.hidden_size,
                                         adapter.reduction_factor, config)
        self.task_specs = {spec.name: spec for spec in specs}
        self.generated = GeneratedAdapters(self.hypernetwork)
        self.set_compositions(lambda site: HyperAdapter(site, self.generated, adapter.activation))
        for spec in specs:
            self.add_head(spec)
        self.override_backbone(layernorm_parameters(backbone), trainable=True)

    @property
    def tasks(self) -> list[str]:
        return self.hypernetwork.tasks

    def forward(self, batch: dict[str, torch.Tensor], task: str) -> ModelOutput:
        self.hypernetwork.task_embeddings.index(task)  # a ConfigError naming the known tasks
        try:
            return super().forward(batch, task)
        finally:
            self.generated.clear()  # weights live for one pass; also frees their graph

    @torch.no_grad()
    def materialised_tensors(self, task: str) -> dict[str, torch.Tensor]:
        """`task`'s generated adapters, head and the backbone LayerNorms (as backbone overrides), as a
        single-adapter artifact."""
        sites = {site.key: {name: value.clone() for name, value in site.composition.weights(task).items()}
                 for site in self.sites}
        self.generated.clear()
        return single_adapter_tensors(sites, self.heads[task].state_dict(),
                                      backbone=layernorm_parameters(self.backbone_info))

    def closed_form_parameter_count(self) -> dict[str, int]:
        """`hyperformer_parameter_count` for this model's sizes (compare with `count_parameters`)."""
        info = self.backbone_info
        return hyperformer_parameter_count(info.hidden_size, info.num_layers, len(self.tasks),
                                           self.adapter_config.reduction_factor, self.hypernetwork.config,
                                           layernorm_params=sum(p.numel() for p in layernorm_parameters(info).values()))


def load_hyperformer(folder: Path, backbone: Backbone) -> HyperFormerModel:
    """Rebuild a joint HyperFormer(++) that `multitask.train_multitask` saved (checks the method, then
    the backbone fingerprint). Its LayerNorms override `backbone`'s until `detach()`."""
    method = read_artifact_config(folder).get("method")
    if method not in HYPERFORMER_VARIANTS:
        raise ArtifactError(f"{folder} holds a {method!r} model, not a HyperFormer "
                            f"({' or '.join(HYPERFORMER_VARIANTS)})")
    config, tensors = load_artifact(folder, backbone)
    return rebuild_hyperformer(backbone, config, tensors, folder)


def rebuild_hyperformer(backbone: Backbone, config: dict, tensors: dict[str, torch.Tensor],
                        folder: Path) -> HyperFormerModel:
    """The joint HyperFormer(++) of a loaded artifact (`config`, `tensors`: `load_artifact`'s)."""
    hypernetwork = replace(HyperNetConfig(**config["hypernetwork"]), variant=config["method"])
    model = HyperFormerModel(backbone, joint_task_specs(config), AdapterConfig(**config["adapter"]), hypernetwork)
    model.load_saved_parameters(model.trainable_parameters(), tensors, folder,
                                f"{config['method']}: re-run the multi-task stage")
    return model
