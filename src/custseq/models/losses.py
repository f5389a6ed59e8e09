"""Loss functions, each a pure function of predictions and targets."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

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


# --- fine-tuning losses (issue 6): churn, value, and how tasks are weighted ---------------------------------------


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary focal loss, mean over the batch (Lin et al. 2017; SeqPreMT's churn loss).

    ``FL = -α_t (1 - p_t)^γ log p_t`` with ``p_t`` the probability of the true class and ``α_t = α`` for
    positives, ``1 - α`` for negatives; ``gamma = 0, alpha = 0.5`` is half the binary cross-entropy.
    """
    targets = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t
    p_t = torch.exp(-ce)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * (1 - p_t) ** gamma * ce
    return _weighted_mean(loss, weight)


def smooth_l1_log1p(
    predicted_log1p: torch.Tensor, value: torch.Tensor, beta: float = 1.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Smooth L1 between a prediction of log1p(value) and log1p of the (non-negative part of the) value."""
    target = torch.log1p(value.clamp(min=0))
    return _weighted_mean(F.smooth_l1_loss(predicted_log1p, target, beta=beta, reduction="none"), weight)


def zero_inflated_lognormal_nll(
    positive_logit: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    value: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of values under a zero-inflated lognormal (Wang, Liu & Miao 2019).

    ``P(value > 0) = sigmoid(positive_logit)``; a positive value is ``LogNormal(mu, sigma)``. Negative values
    (net refunds) count as zero.
    """
    positive = value > 0
    zero_part = F.binary_cross_entropy_with_logits(positive_logit, positive.to(positive_logit.dtype), reduction="none")
    safe = torch.where(positive, value, torch.ones_like(value))
    log_v = torch.log(safe)
    log_pdf = -log_v - log_sigma - 0.5 * math.log(2 * math.pi) - 0.5 * ((log_v - mu) / torch.exp(log_sigma)) ** 2
    loss = zero_part - torch.where(positive, log_pdf, torch.zeros_like(log_pdf))
    return _weighted_mean(loss, weight)


def zero_inflated_lognormal_mean(
    positive_logit: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor
) -> torch.Tensor:
    """Expected value: ``P(value > 0) · exp(mu + sigma² / 2)``."""
    return torch.sigmoid(positive_logit) * torch.exp(mu + 0.5 * torch.exp(2 * log_sigma))


def zero_inflated_lognormal_quantile(
    positive_logit: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, level: float
) -> torch.Tensor:
    """The ``level`` quantile: 0 while ``level ≤ P(value = 0)``, else ``exp(mu + sigma Φ⁻¹(u))`` with
    ``u = (level − P(value = 0)) / P(value > 0)``."""
    p = torch.sigmoid(positive_logit)
    u = ((level - (1 - p)) / p.clamp(min=1e-12)).clamp(1e-6, 1 - 1e-6)
    normal = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    quantile = torch.exp(mu + torch.exp(log_sigma) * normal.icdf(u))
    return torch.where(level <= 1 - p, torch.zeros_like(quantile), quantile)


def uncertainty_weighted_loss(losses: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Combine task losses with learned homoscedastic uncertainty (Kendall, Gal & Cipolla 2018).

    ``Σ_i L_i / (2σ_i²) + log σ_i`` with ``log_var = log σ_i²``; the log term stops σ growing without bound
    (SeqPreMT Eq. 3).
    """
    return (0.5 * torch.exp(-log_var) * losses + 0.5 * log_var).sum()


class TaskWeighting(nn.Module):
    """How the churn and value losses are combined: ``uncertainty`` (learned σ_i), ``fixed`` or ``variance``.

    ``variance`` is the seed's own variant (SeqPreMT Eq. 3): ``w_i = 1 / (2σ_i²)`` with σ_i the standard
    deviation of task i's recent losses (an exponential moving estimate, updated in training mode). Its weights
    are rescaled to sum to the number of tasks: the raw ``1/(2σ²)`` would change the effective learning rate
    as the losses settle.
    """

    # buffers, registered in __init__ (declared here for the type checker: nn.Module's __getattr__ is untyped)
    fixed: torch.Tensor
    loss_mean: torch.Tensor
    loss_var: torch.Tensor
    seen: torch.Tensor

    def __init__(
        self, n_tasks: int, mode: str = "uncertainty", fixed: tuple[float, ...] | None = None, momentum: float = 0.9
    ) -> None:
        super().__init__()
        if mode not in ("uncertainty", "fixed", "variance"):
            raise ValueError(f"task weighting must be uncertainty, fixed or variance, got {mode!r}")
        self.mode = mode
        self.momentum = momentum
        self.log_var = nn.Parameter(torch.zeros(n_tasks)) if mode == "uncertainty" else None
        self.register_buffer("fixed", torch.tensor(fixed or (1.0,) * n_tasks, dtype=torch.float32))
        self.register_buffer("loss_mean", torch.zeros(n_tasks))
        self.register_buffer("loss_var", torch.ones(n_tasks))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        if self.mode == "uncertainty":
            return uncertainty_weighted_loss(losses, cast(nn.Parameter, self.log_var))  # set in this mode
        if self.mode == "fixed":
            return (self.fixed * losses).sum()
        if self.training:
            self._track(losses.detach())
        return (self.weights() * losses).sum()

    def weights(self) -> torch.Tensor:
        """The current weight of each task."""
        if self.mode == "uncertainty":
            return 0.5 * torch.exp(-cast(nn.Parameter, self.log_var).detach())  # set in this mode
        if self.mode == "fixed":
            return self.fixed
        raw = 1.0 / (2 * self.loss_var.clamp(min=1e-8))
        return raw * (len(raw) / raw.sum())

    def _track(self, losses: torch.Tensor) -> None:
        if int(self.seen) == 0:
            self.loss_mean.copy_(losses)
        else:
            delta = losses - self.loss_mean
            self.loss_mean.add_((1 - self.momentum) * delta)
            self.loss_var.mul_(self.momentum).add_((1 - self.momentum) * self.momentum * delta**2)
        self.seen.add_(1)


def _weighted_mean(loss: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp(min=1e-12)
