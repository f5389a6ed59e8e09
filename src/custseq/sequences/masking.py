"""Self-supervised views of a batch: masked positions, the held-out next event, random sub-sequences."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from custseq.sequences.batch import EventBatch


def sample_mask(mask: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Positions to mask: each real token with probability ``rate``, at least one per non-empty sequence.

    Padding is never selected. ``generator`` None uses torch's global generator (seeded by the training loop).
    """
    scores = torch.rand(mask.shape, generator=generator, device="cpu").to(mask.device)  # (B, T)
    chosen = (scores < rate) & mask
    empty = ~chosen.any(dim=1) & mask.any(dim=1)
    if empty.any():
        best = torch.where(mask, scores, torch.full_like(scores, -1.0)).argmax(dim=1)  # (B,)
        rows = torch.nonzero(empty).squeeze(1)
        chosen[rows, best[rows]] = True
    return chosen


@dataclass
class EventTargets:
    """What a head must predict for a set of events (N of them)."""

    categorical: dict[str, torch.Tensor]  # field -> (N,) ids; 0 = no value (ignored)
    numeric: torch.Tensor  # (N, F)
    log_dt_prev: torch.Tensor  # (N,)


def targets_at(batch: EventBatch, rows: torch.Tensor, cols: torch.Tensor) -> EventTargets:
    """The fields of the tokens at (rows, cols)."""
    return EventTargets(
        {name: ids[rows, cols] for name, ids in batch.categorical.items()},
        batch.numeric[rows, cols],
        batch.log_dt_prev[rows, cols],
    )


def split_last(batch: EventBatch) -> tuple[EventBatch, EventTargets, torch.Tensor]:
    """Hold out each customer's last token as the next event to predict.

    Returns the inputs (sequences without their last token where length ≥ 2), the held-out targets and
    which customers have one. The inputs' time to cutoff is re-anchored at the last input token, so that it
    does not reveal when the held-out event happened.
    """
    has_next = batch.lengths >= 2  # (B,)
    rows = torch.arange(batch.size, device=batch.lengths.device)
    last = (batch.lengths - 1).clamp(min=0)
    targets = targets_at(batch, rows, last)
    lengths = torch.where(has_next, batch.lengths - 1, batch.lengths)
    positions = torch.arange(batch.mask.shape[1], device=batch.mask.device)
    mask = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    days = torch.expm1(batch.log_t_to_cutoff)  # (B, T) days to the cutoff
    anchor = days[rows, (lengths - 1).clamp(min=0)].unsqueeze(1)  # (B, 1) the last input token
    reanchored = torch.log1p((days - anchor).clamp(min=0))
    log_t = torch.where(has_next.unsqueeze(1), reanchored, batch.log_t_to_cutoff) * mask
    inputs = replace(batch, mask=mask, lengths=lengths, log_t_to_cutoff=log_t)
    return inputs, targets, has_next


def random_slices(batch: EventBatch, min_fraction: float, generator: torch.Generator | None = None) -> EventBatch:
    """A random contiguous sub-sequence of each customer (CoLES), with at least ``min_fraction`` of its tokens."""
    lengths = batch.lengths
    u = torch.rand(2, batch.size, generator=generator).to(lengths.device)
    low = torch.ceil(lengths.to(torch.float32) * min_fraction).clamp(min=1)
    sizes = (low + torch.floor(u[0] * (lengths - low + 1).to(torch.float32))).to(lengths.dtype)
    sizes = torch.minimum(sizes, lengths.clamp(min=1))
    starts = torch.floor(u[1] * (lengths - sizes + 1).to(torch.float32)).to(lengths.dtype)
    positions = torch.arange(batch.mask.shape[1], device=lengths.device)
    index = (starts.unsqueeze(1) + positions).clamp(max=batch.mask.shape[1] - 1)  # (B, T)
    mask = positions.unsqueeze(0) < sizes.unsqueeze(1)

    def take(x: torch.Tensor) -> torch.Tensor:
        picked = torch.gather(x, 1, index if x.dim() == 2 else index.unsqueeze(-1).expand_as(x))
        return picked * (mask if x.dim() == 2 else mask.unsqueeze(-1)).to(picked.dtype)

    return replace(
        batch,
        categorical={k: take(v) for k, v in batch.categorical.items()},
        numeric=take(batch.numeric),
        log_dt_prev=take(batch.log_dt_prev),
        log_t_to_cutoff=take(batch.log_t_to_cutoff),
        calendar={k: take(v) for k, v in batch.calendar.items()},
        token_type=take(batch.token_type),
        mask=mask,
        lengths=sizes,
    )
