"""Task heads over a pooled sentence representation: classification, regression, multiple choice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .task_specs import TaskSpec


class TaskHead(nn.Module):
    """Dropout and a linear map from the pooled vector to the task's outputs.

    Multiple choice scores each (context, choice) encoding with one logit and compares the choices.
    """

    def __init__(self, hidden_size: int, spec: TaskSpec, dropout: float = 0.1):
        super().__init__()
        self.problem = spec.problem
        out = spec.num_labels if spec.problem == "classification" else 1
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, out)

    def forward(self, pooled: torch.Tensor, num_choices: int | None = None) -> torch.Tensor:
        logits = self.linear(self.dropout(pooled))
        if self.problem == "regression":
            return logits.squeeze(-1)
        if self.problem == "multiple_choice":
            return logits.view(-1, num_choices)
        return logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # losses in fp32 also under bf16 autocast
        if self.problem == "regression":
            return F.mse_loss(logits, labels.to(logits.dtype))
        return F.cross_entropy(logits, labels)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.problem == "regression" else logits.argmax(-1)
