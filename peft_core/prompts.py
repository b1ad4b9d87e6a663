"""Task-description prompts (PEMT): trainable embeddings prepended to the input.

A prompt starts as the backbone's own token embeddings of the task's one-sentence description,
so it begins as a meaningful prefix rather than noise.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import Backbone


def description_embeddings(backbone: Backbone, description: str, max_tokens: int = 32) -> torch.Tensor:
    """(l, d) token embeddings of `description`, special tokens excluded."""
    ids = backbone.tokenizer(description, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
    with torch.no_grad():
        return backbone.model.get_input_embeddings().weight[torch.tensor(ids)].clone()


class TaskPrompt(nn.Module):
    """A learned prefix `P ∈ R^{l×d}`; called with the batch size, returns (B, l, d)."""

    def __init__(self, embeddings: torch.Tensor):
        super().__init__()
        self.embeddings = nn.Parameter(embeddings.clone())

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.embeddings.unsqueeze(0).expand(batch_size, -1, -1)
