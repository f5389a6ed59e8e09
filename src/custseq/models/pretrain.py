"""Self-supervised pre-training of the sequence encoder, and customer embeddings from a trained encoder.

Objectives (switchable in :class:`custseq.config.PretrainConfig`): masked-event reconstruction (15%
SeqPreMT, or CASPR's 30% with zero-vector masks), λ1 · next-event prediction (the held-out last event,
predicted from the customer embedding), and an optional CoLES-style contrastive objective (two random
slices of the same customer are positives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from custseq.config import EncoderConfig, PretrainConfig
from custseq.models.encoder import SequenceEncoder
from custseq.models.heads import EventHead, ProjectionHead
from custseq.models.losses import event_loss, info_nce
from custseq.sequences.batch import EventBatch, SequenceStream
from custseq.sequences.masking import random_slices, sample_mask, split_last, targets_at
from custseq.sequences.vocab import SequenceVocab

MODEL_TYPE = "custseq-pretrain"


@dataclass
class PretrainOutput:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class PretrainModel(nn.Module):
    """The encoder with the heads of the enabled objectives."""

    def __init__(self, encoder: EncoderConfig, pretrain: PretrainConfig, vocab: SequenceVocab) -> None:
        super().__init__()
        self.pretrain_cfg = pretrain
        sizes = {f.name: vocab.size(f.name) for f in vocab.layout.categorical()}
        n_numeric = len(vocab.layout.numeric())
        self.encoder = SequenceEncoder(encoder, sizes, n_numeric)
        d = encoder.d_model
        self.masked_head = EventHead(d, sizes, n_numeric) if "masked" in pretrain.objectives else None
        self.next_head = EventHead(d, sizes, n_numeric) if "next" in pretrain.objectives else None
        self.projection = ProjectionHead(d) if "contrastive" in pretrain.objectives else None

    def forward(self, batch: EventBatch) -> PretrainOutput:
        cfg = self.pretrain_cfg
        inputs, next_targets, has_next = split_last(batch) if self.next_head is not None else (batch, None, None)
        masked = sample_mask(inputs.mask, cfg.mask_rate) if self.masked_head is not None else None
        out = self.encoder(inputs, masked, cfg.mask_style)  # hidden (B, T, D), embedding (B, D)
        losses: list[torch.Tensor] = []
        metrics: dict[str, float] = {}
        if masked is not None:
            rows, cols = torch.nonzero(masked, as_tuple=True)
            loss, m = event_loss(self.masked_head(out.hidden[rows, cols]), targets_at(inputs, rows, cols))
            losses.append(loss)
            metrics.update({f"masked_{k}": v for k, v in m.items()} | {"masked_loss": float(loss.detach())})
        if next_targets is not None and has_next.any():
            keep = has_next
            targets = type(next_targets)(
                {k: v[keep] for k, v in next_targets.categorical.items()},
                next_targets.numeric[keep],
                next_targets.log_dt_prev[keep],
            )
            loss, m = event_loss(self.next_head(out.embedding[keep]), targets)
            losses.append(cfg.next_weight * loss)
            metrics.update({f"next_{k}": v for k, v in m.items()} | {"next_loss": float(loss.detach())})
        if self.projection is not None:
            views = [random_slices(batch, cfg.contrastive_min_fraction) for _ in range(2)]
            z = [self.projection(self.encoder(v).embedding) for v in views]
            loss = info_nce(z[0], z[1], cfg.contrastive_temperature)
            losses.append(cfg.contrastive_weight * loss)
            metrics["contrastive_loss"] = float(loss.detach())
        return PretrainOutput(torch.stack(losses).sum(), metrics)


@torch.no_grad()
def embed(encoder: SequenceEncoder, stream: SequenceStream, device: str | torch.device = "cpu") -> pa.Table:
    """Customer embeddings (``customer_id``, ``e0 … e{D-1}``) for every customer of a stream, in stream order."""
    encoder.eval().to(device)
    ids: list[str] = []
    chunks: list[np.ndarray] = []
    for batch in stream.batches():
        ids.extend(batch.customer_ids)
        chunks.append(encoder(batch.to(device)).embedding.float().cpu().numpy())
    matrix = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    columns = {"customer_id": pa.array(ids, pa.string())}
    columns |= {f"e{j}": pa.array(matrix[:, j], pa.float32()) for j in range(matrix.shape[1])}
    return pa.table(columns).sort_by("customer_id")
