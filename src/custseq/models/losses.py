"""Loss functions, each a pure function of predictions and targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from custseq.models.heads import EventPrediction
from custseq.sequences.masking import EventTargets


def event_loss(pred: EventPrediction, target: EventTargets) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction loss of events: mean cross-entropy over categorical fields (id 0 = no value, ignored)
    plus the mean squared error of the numeric fields and of log Δt (SeqPreMT §3.2; CASPR)."""
    terms = []
    metrics: dict[str, float] = {}
    for name, logits in pred.logits.items():
        ids = target.categorical[name]
        if (ids != 0).any():
            terms.append(F.cross_entropy(logits, ids, ignore_index=0))
            seen = ids != 0
            metrics[f"acc_{name}"] = (logits.argmax(-1)[seen] == ids[seen]).float().mean().item()
    categorical = torch.stack(terms).mean() if terms else pred.log_dt_prev.sum() * 0.0
    continuous = torch.cat([pred.numeric, pred.log_dt_prev.unsqueeze(-1)], dim=-1)
    wanted = torch.cat([target.numeric, target.log_dt_prev.unsqueeze(-1)], dim=-1)
    mse = F.mse_loss(continuous, wanted)
    metrics["ce"], metrics["mse"] = float(categorical.detach()), float(mse.detach())
    return categorical + mse, metrics


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and ``b`` are positives, every other row a negative (CoLES, SimCLR)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (N, N)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
