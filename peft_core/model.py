"""A frozen backbone with adapter sites, an optional input prompt, and one head per task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbones import Backbone
from .errors import ArtifactError, BackboneError
from .heads import TaskHead
from .metrics import compute_metrics
from .sites import AdapterSite, Composition, ForwardContext, Placement, attach_sites, detach_sites, reattach_sites
from .task_specs import TaskSpec


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class AdapterModel(nn.Module):
    """Backbone + sites; a head reads the sentence vector the backbone's family pools (`Backbone.pool`).
    `output`: the backbone output this model reads (`text_model.TextToTextModel` answers in words)."""

    output = "head"

    def __init__(self, backbone: Backbone, placement: str | Placement = "pfeiffer"):
        if backbone.output != self.output:
            raise BackboneError(f"backbone '{backbone.name}' is loaded for {backbone.output} output, but "
                                f"{type(self).__name__} answers through {self.output} output; load it for that")
        super().__init__()
        self.backbone_info = backbone
        self.encoder = backbone.model
        self.placement = placement
        self.context = ForwardContext()
        self.sites: list[AdapterSite] = attach_sites(backbone, placement, self.context)
        self.heads = nn.ModuleDict()
        self.prompt: nn.Module | None = None  # called with the batch size, returns (B, l, d) embeddings
        self.parked = False

    # -- building ------------------------------------------------------------------------------
    def set_compositions(self, make: Callable[[AdapterSite], Composition | None]) -> None:
        for site in self.sites:
            site.composition = make(site)
            if site.composition is not None:
                site.composition.place(site, self.backbone_info.hidden_size)

    def add_head(self, spec: TaskSpec, dropout: float = 0.1) -> TaskHead:
        self.heads[spec.name] = TaskHead(self.backbone_info.hidden_size, spec, dropout)
        return self.heads[spec.name]

    # -- the shared backbone -------------------------------------------------------------------
    def override_backbone(self, names: Iterable[str], *, trainable: bool = False) -> None:
        """This model computes with its own values of the backbone tensors `names` (paths as loaded),
        starting from theirs; `trainable`: those that are parameters train. `detach()` puts them back."""
        self.backbone_info.state.override(self, names, trainable=trainable)

    def set_backbone_values(self, values: Mapping[str, torch.Tensor]) -> None:
        """Compute with `values` ({path in the backbone: tensor}, an artifact's) for those backbone tensors."""
        try:
            self.backbone_info.state.assign(self, values)
        except BackboneError:
            self.detach()
            raise

    def backbone_values(self) -> dict[str, torch.Tensor]:
        """The values of the backbone tensors this model overrides, by their path as loaded."""
        return self.backbone_info.state.values(self)

    def park(self) -> None:
        """Take the sites off and put the backbone's values back, keeping this model's aside (`resume`)."""
        if not self.parked:
            detach_sites(self.backbone_info)
            self.backbone_info.state.park(self)
            self.parked = True

    def resume(self) -> None:
        if self.parked:
            reattach_sites(self.backbone_info, self.placement, self.sites)
            self.backbone_info.state.resume(self)
            self.parked = False

    def detach(self) -> None:
        """Remove every site and put back the backbone tensors it overrides: the backbone is left
        exactly as it was loaded."""
        self.backbone_info.state.release(self)
        if not self.parked:
            detach_sites(self.backbone_info)
        self.sites = []
        self.parked = False

    # -- running -------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], task: str) -> ModelOutput:
        head = self.heads[task]
        input_ids = batch["input_ids"]
        num_choices = input_ids.shape[1] if input_ids.dim() == 3 else None
        flat = {k: v.flatten(0, 1) if num_choices else v for k, v in batch.items() if k != "labels"}
        hidden, mask = self._encode(flat, task)
        logits = head(self.backbone_info.pool(hidden, mask), num_choices)
        loss = None
        if "labels" in batch:
            loss = head.loss(logits, batch["labels"])
            if self.context.auxiliary_losses:
                loss = loss + torch.stack(self.context.auxiliary_losses).sum()
        return ModelOutput(logits=logits, loss=loss)

    def predict_batch(self, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        """Each row's prediction: a class or choice index, or a value (regression)."""
        return self.heads[task].predict(self(batch, task).logits.float())

    def scored(self, spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """The task's metrics of `predictions` against `labels`, and the predictions as they were scored."""
        return compute_metrics(spec, predictions, labels), predictions

    def _encode(self, inputs: dict[str, torch.Tensor], task: str) -> tuple[torch.Tensor, torch.Tensor]:
        mask = inputs["attention_mask"]
        if self.prompt is None:
            self.context.reset(task, mask, 0)
            return self.encoder(**inputs).last_hidden_state, mask
        prefix = self.prompt(mask.shape[0])
        length = prefix.shape[1]
        embeds = torch.cat([prefix, self.encoder.get_input_embeddings()(inputs["input_ids"])], dim=1)
        full_mask = torch.cat([mask.new_ones(mask.shape[0], length), mask], dim=1)
        extra = {}
        if "token_type_ids" in inputs:
            types = inputs["token_type_ids"]
            extra["token_type_ids"] = torch.cat([types.new_zeros(types.shape[0], length), types], dim=1)
        self.context.reset(task, full_mask, length)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=full_mask, **extra).last_hidden_state
        return hidden[:, length:], mask


    # -- what trains ---------------------------------------------------------------------------
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def load_saved_parameters(self, params: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor],
                              folder, rerun_hint: str) -> None:
        """Copy an artifact's tensors into `params`; on a name mismatch detach and raise ArtifactError."""
        if set(params) != set(tensors):
            self.detach()
            raise ArtifactError(f"{folder} does not hold the tensors this model trains "
                                f"({len(set(params) ^ set(tensors))} names differ); {rerun_hint}")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(tensors[name])

    def split_trainable(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """The trainable parameters: (the adapter, transfer or joint part, the task heads)."""
        head_ids = {id(p) for p in self.heads.parameters()}
        trainable = self.trainable_parameters().values()
        return [p for p in trainable if id(p) not in head_ids], [p for p in trainable if id(p) in head_ids]

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameters: `excluding_heads` (the adapter, transfer or joint part) and `heads`."""
        body, heads = self.split_trainable()
        return {"excluding_heads": sum(p.numel() for p in body), "heads": sum(p.numel() for p in heads)}
