"""The multi-task model: customer embedding ⊕ tabular features → shared trunk → churn and value heads.

Churn head: one logit, focal loss. Value head: a zero-inflated lognormal (P(value > 0), μ, σ) giving the
expected value and quantiles (default), or a log1p regression with Smooth L1 (SeqPreMT). The two losses are
combined by :class:`custseq.models.losses.TaskWeighting`. References: SeqPreMT (seed 000), CASPR (seed 003).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from custseq.config import FinetuneConfig
from custseq.models.encoder import SequenceEncoder
from custseq.models.losses import (
    TaskWeighting,
    focal_loss,
    smooth_l1_log1p,
    zero_inflated_lognormal_mean,
    zero_inflated_lognormal_nll,
    zero_inflated_lognormal_quantile,
)
from custseq.models.lstm import LstmEncoder
from custseq.sequences.batch import EventBatch

QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class CustomerBatch:
    """Sequences, tabular inputs and (for training) labels of the same customers, in the same order."""

    events: EventBatch
    tabular: torch.Tensor  # (B, W) standardised numeric features and missing indicators
    categories: dict[str, torch.Tensor]  # profile column -> (B,) ids
    churned: torch.Tensor | None = None  # (B,) float 0/1
    value: torch.Tensor | None = None  # (B,) net value over the horizon
    weight: torch.Tensor | None = None  # (B,) sample weights (e.g. log-value re-weighting)

    @property
    def size(self) -> int:
        return self.events.size

    def __len__(self) -> int:
        return self.size

    def to(self, device: torch.device | str) -> CustomerBatch:
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device, non_blocking=True)

        return CustomerBatch(
            self.events.to(device), self.tabular.to(device, non_blocking=True),
            {k: v.to(device) for k, v in self.categories.items()},
            move(self.churned), move(self.value), move(self.weight),
        )  # fmt: skip


@dataclass
class MultiTaskOutput:
    churn_logit: torch.Tensor  # (B,)
    value_params: torch.Tensor  # (B, 3) ZILN: positive logit, μ, log σ — or (B, 1) predicted log1p(value)
    embedding: torch.Tensor  # (B, D) customer embedding from the encoder
    loss: torch.Tensor | None = None
    metrics: dict[str, float] | None = None


class MultiTaskModel(nn.Module):
    """Encoder + tabular inputs → trunk → churn logit and value distribution."""

    def __init__(
        self,
        encoder: SequenceEncoder | LstmEncoder,
        tabular_width: int,
        category_sizes: dict[str, int],
        cfg: FinetuneConfig,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        embeddings = {name: nn.Embedding(size, min(16, size)) for name, size in category_sizes.items()}
        self.categories = nn.ModuleDict(embeddings)
        width = (encoder.dim if cfg.use_sequence else 0) + (tabular_width if cfg.use_tabular else 0)
        width += sum(e.embedding_dim for e in embeddings.values()) if cfg.use_tabular else 0
        self.trunk = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, cfg.trunk_dim), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.trunk_dim, cfg.trunk_dim), nn.GELU(),
        )  # fmt: skip
        self.churn_head = nn.Linear(cfg.trunk_dim, 1)
        self.value_head = nn.Linear(cfg.trunk_dim, 3 if cfg.value_loss == "ziln" else 1)
        self.weighting = TaskWeighting(2, cfg.weighting, cfg.fixed_weights)
        if cfg.encoder_mode == "frozen":
            self.encoder.requires_grad_(False)

    def forward(self, batch: CustomerBatch) -> MultiTaskOutput:
        parts = []
        embedding = self.encoder(batch.events).embedding  # (B, D)
        if self.cfg.use_sequence:
            parts.append(embedding)
        if self.cfg.use_tabular:
            parts.append(batch.tabular)  # (B, W)
            parts += [embed(batch.categories[name]) for name, embed in self.categories.items()]
        h = self.trunk(torch.cat(parts, dim=-1))  # (B, trunk_dim)
        out = MultiTaskOutput(self.churn_head(h).squeeze(-1), self.value_head(h), embedding)
        if batch.churned is not None and batch.value is not None:
            out.loss, out.metrics = self._loss(out, batch.churned, batch.value, batch.weight)
        return out

    def _loss(
        self, out: MultiTaskOutput, churned: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        churn = focal_loss(out.churn_logit, churned, cfg.focal_gamma, cfg.focal_alpha, weight)
        if cfg.value_loss == "ziln":
            p = out.value_params
            value = zero_inflated_lognormal_nll(p[:, 0], p[:, 1], p[:, 2], target, weight)
        else:
            value = smooth_l1_log1p(out.value_params[:, 0], target, weight=weight)
        losses = torch.stack([churn, value])
        weights = self.weighting.weights()
        metrics = {"churn_loss": float(churn.detach()), "value_loss": float(value.detach()),
                   "weight_churn": float(weights[0]), "weight_value": float(weights[1])}  # fmt: skip
        return self.weighting(losses), metrics

    @torch.no_grad()
    def predict_values(self, out: MultiTaskOutput) -> dict[str, torch.Tensor]:
        """Churn probability, expected value, P10/P50/P90 of the value, all (B,) and non-negative, and
        ``clv_if_active``: the expected value given a purchase in the horizon (NaN for a point regression)."""
        result = {"churn_probability": torch.sigmoid(out.churn_logit)}
        p = out.value_params
        if self.cfg.value_loss == "ziln":
            result["clv_expected"] = zero_inflated_lognormal_mean(p[:, 0], p[:, 1], p[:, 2])
            for q in QUANTILES:
                result[f"clv_p{round(q * 100)}"] = zero_inflated_lognormal_quantile(p[:, 0], p[:, 1], p[:, 2], q)
            result["clv_if_active"] = zero_inflated_lognormal_mean(torch.full_like(p[:, 0], math.inf), p[:, 1], p[:, 2])
        else:
            point = torch.expm1(p[:, 0]).clamp(min=0)
            result["clv_expected"] = point
            for q in QUANTILES:  # a point regression has no spread: every quantile is the point
                result[f"clv_p{round(q * 100)}"] = point
            result["clv_if_active"] = torch.full_like(point, math.nan)
        return result
