"""The optimizer and its schedule: AdamW parameter groups, linear warm-up then cosine decay, and the clipped step."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from custseq.config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0-based): linear warm-up, then cosine to 0.

    ``step / warmup_steps`` during warm-up, then ``0.5 (1 + cos(π p))`` with
    ``p = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1]
    (the schedule of ``transformers.get_cosine_schedule_with_warmup``).
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    learning_rate: float = 1e-3,
    lr_scales: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW parameter groups: decay on weight matrices only, and per-module learning rates.

    Biases and norm scales (every parameter with fewer than 2 dimensions) and embedding tables get no
    weight decay; parameters that do not require gradients are left out. ``lr_scales`` maps a parameter
    name prefix (e.g. ``"encoder."``) to a multiplier of ``learning_rate`` (discriminative learning
    rates; the first matching prefix wins). Empty groups are dropped.
    """
    no_decay: set[int] = set()  # ids of the parameters that get no weight decay
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding | torch.nn.EmbeddingBag):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = next((s for prefix, s in (lr_scales or {}).items() if name.startswith(prefix)), 1.0)
            decays = p.ndim >= 2 and id(p) not in no_decay
            groups.setdefault((decays, scale), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0, "lr": learning_rate * scale}
        for (decays, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))
    ]


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, total_steps: int, lr_scales: Mapping[str, float] | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`optimizer_param_groups` and its :func:`lr_factor` schedule over ``total_steps`` steps.

    Parameters
    ----------
    model : torch.nn.Module
        The model to optimise.
    cfg : TrainConfig
        Its ``learning_rate``, ``weight_decay`` and ``warmup_fraction`` are used.
    total_steps : int
        Optimizer steps of the whole run; the first ``int(cfg.warmup_fraction * total_steps)`` warm up.
    lr_scales : mapping of str to float, optional
        Learning-rate multipliers by parameter-name prefix.

    Returns
    -------
    tuple
        The optimizer and its learning-rate scheduler.
    """
    groups = optimizer_param_groups(model, cfg.weight_decay, cfg.learning_rate, lr_scales)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    warmup_steps = int(cfg.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
    return optimizer, scheduler


def clip_and_step(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    clip_norm: float,
) -> torch.Tensor:
    """Clip the gradients' total norm to ``clip_norm``, step optimizer and schedule; the norm before clipping.

    With an fp16 ``scaler`` the gradients are unscaled first, and the step is skipped when they overflowed.
    The gradients are cleared afterwards. Returns the norm as a float64 scalar tensor (no device sync).
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), clip_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm.detach().double()
