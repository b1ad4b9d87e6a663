"""A frozen backbone with adapter sites, an optional input prompt, and one head per task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .backbones import Backbone
from .errors import ArtifactError
from .heads import TaskHead
from .sites import AdapterSite, Composition, ForwardContext, Placement, attach_sites, detach_sites
from .task_specs import TaskSpec


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class AdapterModel(nn.Module):
    """Backbone + sites; sentence representations are mean-pooled (sentence-transformers style)."""

    def __init__(self, backbone: Backbone, placement: str | Placement = "pfeiffer"):
        super().__init__()
        self.backbone_info = backbone
        self.encoder = backbone.model
        self.placement = placement
        self.context = ForwardContext()
        self.sites: list[AdapterSite] = attach_sites(backbone, placement, self.context)
        self.heads = nn.ModuleDict()
        self.prompt: nn.Module | None = None  # called with the batch size, returns (B, l, d) embeddings
        self.restore_on_detach: list[Callable[[], None]] = []  # undo in-place changes to the shared backbone

    # -- building ------------------------------------------------------------------------------
    def set_compositions(self, make: Callable[[AdapterSite], Composition | None]) -> None:
        for site in self.sites:
            site.composition = make(site)

    def add_head(self, spec: TaskSpec, dropout: float = 0.1) -> TaskHead:
        self.heads[spec.name] = TaskHead(self.backbone_info.hidden_size, spec, dropout)
        return self.heads[spec.name]

    def detach(self) -> None:
        """Remove every site: the backbone is left exactly as it was loaded."""
        for restore in self.restore_on_detach:
            restore()
        self.restore_on_detach = []
        detach_sites(self.backbone_info)
        self.sites = []

    @torch.no_grad()
    def override_backbone(self, values: dict[str, torch.Tensor]) -> None:
        """Copy `values` ({path in the encoder: tensor}, an artifact's backbone overrides) into the shared
        encoder's parameters; they are put back when the model detaches."""
        params = dict(self.encoder.named_parameters())
        if unknown := sorted(set(values) - set(params)):
            self.detach()
            raise ArtifactError(f"the artifact overrides backbone parameters this backbone lacks: {', '.join(unknown[:5])}")
        originals = {path: params[path].detach().clone() for path in values}
        _copy_into(params, values)
        self.restore_on_detach.append(lambda: _copy_into(params, originals))

    # -- running -------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], task: str) -> ModelOutput:
        head = self.heads[task]
        input_ids = batch["input_ids"]
        num_choices = input_ids.shape[1] if input_ids.dim() == 3 else None
        flat = {k: v.flatten(0, 1) if num_choices else v for k, v in batch.items() if k != "labels"}
        hidden, mask = self._encode(flat, task)
        logits = head(self._pool(hidden, mask), num_choices)
        loss = None
        if "labels" in batch:
            loss = head.loss(logits, batch["labels"])
            if self.context.auxiliary_losses:
                loss = loss + torch.stack(self.context.auxiliary_losses).sum()
        return ModelOutput(logits=logits, loss=loss)

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

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

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

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameters: `excluding_heads` (the adapter, transfer or joint part) and `heads`."""
        head_ids = {id(p) for p in self.heads.parameters()}
        trainable = self.trainable_parameters().values()
        heads = sum(p.numel() for p in trainable if id(p) in head_ids)
        return {"excluding_heads": sum(p.numel() for p in trainable) - heads, "heads": heads}


@torch.no_grad()
def _copy_into(params: dict[str, nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    for path, value in values.items():
        params[path].copy_(value)
