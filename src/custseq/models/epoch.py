"""One pass over the data: a training epoch (accumulation, clipping, mixed precision, DDP) and a validation pass.

Both return item-weighted sums (loss, ``metric:<m>`` for every metric the model reports, and ``items``)
that stay on the device until the epoch ends, so that no batch waits for a GPU sync.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from custseq.config import TrainConfig
from custseq.models.optimization import clip_and_step


def mixed_precision(device: torch.device, enabled: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """The autocast dtype and gradient scaler for ``device``: bf16 where CUDA supports it, else fp16 with a scaler.

    Returns ``(None, None)`` off CUDA or when not ``enabled``.
    """
    amp_dtype = None
    if device.type == "cuda" and enabled:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    return amp_dtype, scaler


def train_epoch(
    net: torch.nn.Module,
    model: torch.nn.Module,
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    amp_dtype: torch.dtype | None,
    device: torch.device,
    cfg: TrainConfig,
    show: Callable[[torch.Tensor, int, bool], None],
) -> tuple[dict[str, Any], float]:
    """Item-weighted sums of the loss and metrics over one epoch, and the lr of its last step.

    The loss is divided by ``cfg.grad_accumulation``; the optimizer steps every ``grad_accumulation``
    batches and after the last one, with gradients clipped to ``cfg.clip_norm``. The sums also hold
    ``grad_norm`` (summed over steps, before clipping) and ``steps``.

    Parameters
    ----------
    net : torch.nn.Module
        ``model``, or its :class:`~torch.nn.parallel.DistributedDataParallel` wrapper, which runs the batches.
    model : torch.nn.Module
        The model whose parameters are clipped.
    batches : iterable
        This rank's training batches of the epoch.
    optimizer, scheduler, scaler
        The optimizer, its learning-rate schedule and the fp16 gradient scaler (or None).
    amp_dtype : torch.dtype or None
        The autocast dtype; None runs in full precision.
    device : torch.device
        Where the batches go.
    cfg : TrainConfig
        Its ``grad_accumulation`` and ``clip_norm`` are used.
    show : callable
        ``show(loss_sum, items, stepped)``, called after every batch (the progress bar).

    Returns
    -------
    tuple
        The sums, and the learning rate of the epoch's last optimizer step.
    """
    net.train()
    sums = {"loss": _zero(device), "items": _zero(device), "grad_norm": _zero(device), "steps": _zero(device)}
    items, lr, k = 0, optimizer.param_groups[0]["lr"], cfg.grad_accumulation
    optimizer.zero_grad(set_to_none=True)
    for i, (batch, is_last) in enumerate(_with_last(batches)):
        batch = batch.to(device)
        n = _batch_items(batch)
        step = is_last or (i + 1) % k == 0
        # Under DDP, gradients are all-reduced only on the backward pass that precedes a step.
        sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not step else contextlib.nullcontext()
        with sync:
            with _autocast(device, amp_dtype):
                out = net(batch)
            loss = out.loss.float()
            (scaler.scale(loss / k) if scaler is not None else loss / k).backward()
        sums["loss"] += loss.detach().double() * n
        _add_metrics(sums, getattr(out, "metrics", None), n)
        items += n
        if step:
            lr = optimizer.param_groups[0]["lr"]
            sums["grad_norm"] += clip_and_step(model.parameters(), optimizer, scheduler, scaler, cfg.clip_norm)
            sums["steps"] += 1
        show(sums["loss"], items, step)
    sums["items"] += items
    return sums, lr


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Any], device: torch.device, amp_dtype: torch.dtype | None
) -> dict[str, Any]:
    """Item-weighted sums of the validation loss and metrics (on the unwrapped model: no collectives)."""
    model.eval()
    sums = {"loss": _zero(device), "items": _zero(device)}
    for batch in batches:
        batch = batch.to(device)
        n = _batch_items(batch)
        with _autocast(device, amp_dtype):
            out = model(batch)
        sums["loss"] += out.loss.detach().double() * n
        sums["items"] += n
        _add_metrics(sums, getattr(out, "metrics", None), n)
    return sums


def count_batches(batches: Iterable[Any]) -> int:
    """How many batches ``batches`` yields (one pass, no model work)."""
    return sum(1 for _ in batches)


def _add_metrics(sums: dict[str, Any], metrics: dict[str, Any] | None, n: int) -> None:
    """Add item-weighted metrics: tensors stay on their device (no sync), floats stay Python floats."""
    for name, value in (metrics or {}).items():
        key = f"metric:{name}"
        weighted = value.detach().double() * n if isinstance(value, torch.Tensor) else float(value) * n
        sums[key] = sums[key] + weighted if key in sums else weighted


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _with_last(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Pair each item with whether it is the last one (to step after an incomplete accumulation)."""
    it = iter(items)
    try:
        current = next(it)
    except StopIteration:
        return
    for following in it:
        yield current, False
        current = following
    yield current, True


def _batch_items(batch: Any) -> int:
    size = getattr(batch, "size", None)
    return int(size) if isinstance(size, int | np.integer) else len(batch)


def _zero(device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=torch.float64, device=device)
