"""The sequence encoder: events → token vectors → pre-LayerNorm Transformer → customer embedding.

One token = one order, transaction or behaviour event (see :mod:`custseq.sequences.tokens`). Its vector is
the sum of: each categorical field's embedding (dimension ≈ √cardinality, projected to d_model), a
projection of the standardised numeric fields, a time encoding (log Δt since the previous event, log time
to the cutoff, day of week, month, hour), the token-type embedding and a learned position counted from the
end of the sequence. Masked tokens (pre-training) have their content and time replaced by a learned
[MASK] vector ("token" style) or by zeros (CASPR's "zero" style); their position stays.

References: SeqPreMT (seed 000) and CASPR (seed 003) in ``shared/seeds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from custseq.config import EncoderConfig
from custseq.sequences.batch import TIME_CATEGORIES, EventBatch


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # (B, T, D) one vector per token (padding positions are meaningless)
    embedding: torch.Tensor  # (B, D) the customer embedding
    mask: torch.Tensor  # (B, T) True on real tokens


def category_dim(cardinality: int, cap: int) -> int:
    """Embedding width of a categorical field: ≈ √cardinality (CASPR), at least 2, at most ``cap``."""
    return max(2, min(cap, math.ceil(math.sqrt(cardinality)) + 1))


class EventEmbedding(nn.Module):
    """Sum of field, numeric, time, token-type and position embeddings: (B, T) fields → (B, T, D)."""

    def __init__(self, cfg: EncoderConfig, category_sizes: dict[str, int], n_numeric: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.fields = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Embedding(size, category_dim(size, cfg.max_category_dim), padding_idx=0),
                    nn.Linear(category_dim(size, cfg.max_category_dim), d, bias=False),
                )
                for name, size in category_sizes.items()
            }
        )
        self.numeric = nn.Linear(n_numeric, d) if n_numeric else None
        self.time = nn.Linear(2, d)  # log Δt since the previous token, log time to the cutoff
        self.calendar = nn.ModuleDict({name: nn.Embedding(n, d) for name, n in TIME_CATEGORIES.items()})
        self.token_type = nn.Embedding(2, d)
        self.position = nn.Embedding(cfg.max_events, d)  # 0 = the latest token
        self.mask_vector = nn.Parameter(torch.zeros(d))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, batch: EventBatch, masked: torch.Tensor | None = None, style: str = "token") -> torch.Tensor:
        content = self.token_type(batch.token_type)  # (B, T, D)
        for name, embed in self.fields.items():
            content = content + embed(batch.categorical[name])
        if self.numeric is not None:
            content = content + self.numeric(batch.numeric)  # (B, T, F) -> (B, T, D)
        times = torch.stack([batch.log_dt_prev, batch.log_t_to_cutoff], dim=-1)  # (B, T, 2)
        content = content + self.time(times)
        for name, embed in self.calendar.items():
            content = content + embed(batch.calendar[name])
        if masked is not None:
            hidden = masked.unsqueeze(-1)  # (B, T, 1)
            replacement = self.mask_vector if style == "token" else torch.zeros_like(self.mask_vector)
            content = torch.where(hidden, replacement.expand_as(content), content)
        from_end = batch.lengths.unsqueeze(1) - 1 - torch.arange(batch.mask.shape[1], device=batch.mask.device)
        position = self.position(from_end.clamp(min=0, max=self.position.num_embeddings - 1))  # (B, T, D)
        return self.dropout(self.norm(content + position))


class SequenceEncoder(nn.Module):
    """Customer sequence → token states and a pooled customer embedding."""

    def __init__(self, cfg: EncoderConfig, category_sizes: dict[str, int], n_numeric: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = EventEmbedding(cfg, category_sizes, n_numeric)
        self.cls = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.d_model,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.d_ff,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-LayerNorm
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(cfg.d_model)

    @property
    def dim(self) -> int:
        return self.cfg.d_model

    def forward(self, batch: EventBatch, masked: torch.Tensor | None = None, style: str = "token") -> EncoderOutput:
        tokens = self.embed(batch, masked, style)  # (B, T, D)
        b = tokens.shape[0]
        x = torch.cat([self.cls.expand(b, 1, -1), tokens], dim=1)  # (B, 1 + T, D), [CLS] first
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), batch.mask], dim=1)  # (B, 1 + T)
        x = self.final_norm(self.transformer(x, src_key_padding_mask=~keep))  # (B, 1 + T, D)
        hidden = x[:, 1:]  # (B, T, D)
        return EncoderOutput(hidden, self._pool(x[:, 0], hidden, batch.mask), batch.mask)

    def _pool(self, cls: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)
        if self.cfg.pooling == "mean":
            return mean
        if self.cfg.pooling == "cls":
            return cls
        return 0.5 * (mean + cls)
