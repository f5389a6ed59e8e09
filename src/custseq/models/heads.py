"""Heads on top of the encoder: event prediction (masked and next event) and the contrastive projection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EventPrediction:
    logits: dict[str, torch.Tensor]  # field -> (N, V)
    numeric: torch.Tensor  # (N, F)
    log_dt_prev: torch.Tensor  # (N,)


class EventHead(nn.Module):
    """Predict an event's categorical fields, numeric fields and log Δt from a vector (N, D)."""

    def __init__(self, d_model: int, category_sizes: dict[str, int], n_numeric: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.categorical = nn.ModuleDict({name: nn.Linear(d_model, size) for name, size in category_sizes.items()})
        self.continuous = nn.Linear(d_model, n_numeric + 1)  # numeric fields, then log Δt

    def forward(self, x: torch.Tensor) -> EventPrediction:
        h = self.trunk(x)  # (N, D)
        out = self.continuous(h)  # (N, F + 1)
        return EventPrediction({k: head(h) for k, head in self.categorical.items()}, out[:, :-1], out[:, -1])


class ProjectionHead(nn.Module):
    """Projection of customer embeddings for the contrastive objective (N, D) -> (N, P)."""

    def __init__(self, d_model: int, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
