"""The training loop shared by pre-training and every fine-tuning: plain PyTorch, outside the model.

AdamW (no weight decay on biases, norm scales or embeddings), linear warm-up then cosine decay to 0,
gradient accumulation and clipping, early stopping on the validation loss that restores the best
weights, a JSON-lines log, a checkpoint every epoch with exact resume, mixed precision on CUDA, and
distributed data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU) where only rank 0 writes.

The batch contract
------------------
``make_train_batches(epoch, rank, world_size)`` returns the batches of one epoch for one rank and
``make_val_batches(rank, world_size)`` the validation batches. Both must be pure functions of their
arguments (derive any shuffling from ``epoch`` and ``cfg.seed``, e.g. with :func:`shard_indices`),
because that is what makes a resumed run identical to an uninterrupted one. Under DDP every rank
must yield the same number of training batches (:func:`shard_indices` pads to equal shards).
A batch has ``.to(device)`` returning the moved batch and an integer ``.size`` or ``len()``
(items, i.e. customers, for throughput and item-weighted means). ``model(batch)`` returns an object
with a scalar ``.loss`` tensor and optionally ``.metrics``, a dict of floats or scalar tensors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn.parallel import DistributedDataParallel

from custseq.config import TrainConfig, config_to_dict
from custseq.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_FORMAT = 1
# Settings that may change between an interrupted run and its resumption (they move, not change, the math).
_RESUMABLE_CHANGES = ("device", "mixed_precision")
_CHECKPOINT_KEYS = (
    "format", "next_epoch", "model", "optimizer", "scheduler", "scaler", "rng", "best_state", "best_loss",
    "best_epoch", "bad_epochs", "stopped_early", "history", "total_steps", "batches_per_epoch", "world_size", "config",
)  # fmt: skip


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    best_epoch : int
        0-based epoch whose weights the model holds at the end (-1 if no epoch had a finite loss).
    best_val_loss : float
        The monitored loss of that epoch: validation loss, or training loss when there is no validation.
    epochs_run : int
        Epochs completed, counting those before a resume.
    stopped_early : bool
        Whether the patience ran out (which ends training, before ``cfg.epochs`` unless on the last epoch).
    history : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``val_loss`` (None without validation), ``lr``
        (of the epoch's last optimizer step), ``grad_norm`` (mean before clipping), ``seconds``,
        ``items_per_s`` (training items of all ranks per second), and ``train_<m>`` / ``val_<m>`` for every
        metric ``m`` the model reports, item-weighted means over the epoch and all ranks.
    """

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict]


def is_main_process() -> bool:
    """True unless this process is a non-zero rank of an initialised process group (only rank 0 writes)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown_distributed() -> None:
    """End a torchrun process cleanly: wait for every rank, then destroy the process group ``train`` started.

    Without the barrier a rank can tear its group down while a peer still talks to it, and gloo aborts the
    process at exit ("terminate called without an active exception").
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_indices(n: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This rank's share of a seeded per-epoch permutation of ``range(n)`` (a distributed sampler).

    The permutation depends only on ``(seed, epoch)``; it is padded by wrapping around to a multiple of
    ``world_size`` and split by stride, as :class:`torch.utils.data.DistributedSampler` does, so every
    rank gets ``ceil(n / world_size)`` indices and the union of all shards covers every index.

    Parameters
    ----------
    n : int
        Number of items.
    epoch, seed : int
        Non-negative; together they fix the permutation.
    rank, world_size : int
        This process's rank and the number of processes.

    Returns
    -------
    numpy.ndarray
        int64 indices into ``range(n)``.

    Raises
    ------
    ConfigError
        If ``n``, ``epoch`` or ``seed`` is negative, or ``rank`` is not in ``[0, world_size)``.
    """
    if min(n, epoch, seed) < 0:
        raise ConfigError(f"n, epoch and seed must be >= 0, got n={n}, epoch={epoch}, seed={seed}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = -(-n // world_size)
    padded = np.resize(order, per_rank * world_size)  # repeats the first few to even out the shards
    return padded[rank::world_size].astype(np.int64)


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
    no_decay = set()
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


def resolve_device(name: str) -> torch.device:
    """The torch device for ``TrainConfig.device``: "auto" is CUDA when present, else CPU.

    A bare "cuda" becomes ``cuda:$LOCAL_RANK``, so that each ``torchrun`` process takes its own GPU.

    Raises
    ------
    ConfigError
        If the name is not a torch device, or CUDA is asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asks for CUDA, which is not available here; use device='auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (tensors and plain data only, ``weights_only=True``).

    Raises
    ------
    ArtifactError
        If the file is missing, truncated, not a checkpoint, or of another format version.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # truncated zip, bad pickle opcode, unsafe global: all mean the file is unusable
        raise ArtifactError(
            f"checkpoint {path} is corrupted or unreadable ({type(e).__name__}: {e}); "
            "delete it to train from scratch, or restore it from a backup"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ArtifactError(f"{path} is not a custseq training checkpoint of format {CHECKPOINT_FORMAT}, found {found}")
    if missing := [k for k in _CHECKPOINT_KEYS if k not in state]:
        raise ArtifactError(f"checkpoint {path} lacks {missing}; it is damaged, delete it to train from scratch")
    return state


def train(
    model: torch.nn.Module,
    make_train_batches: Callable[[int, int, int], Iterable[Any]],
    make_val_batches: Callable[[int, int], Iterable[Any]] | None,
    cfg: TrainConfig,
    *,
    out_dir: Path | None = None,
    steps_per_epoch: int | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "training",
    score_fn: Callable[[torch.nn.Module], float] | None = None,
    lr_scales: Mapping[str, float] | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it, in eval mode, with the weights of its best epoch.

    Each epoch runs the training batches (the loss divided by ``cfg.grad_accumulation``, an optimizer
    step every ``grad_accumulation`` batches and after the epoch's last batch, gradients clipped to
    ``cfg.clip_norm``), then the validation batches. Training stops after ``cfg.epochs`` or when the
    monitored loss (validation, else training) has not fallen by more than ``cfg.min_delta`` below its
    best for ``cfg.patience`` epochs. The global RNGs (torch, numpy, ``random``) are seeded from
    ``cfg.seed + rank`` at the start, so CPU runs are bit-for-bit reproducible.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here when it is not yet
    (gloo on CPU, NCCL on CUDA) and left initialised for the caller; the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, epoch losses are averaged over all ranks
    (so all take the same early-stopping decision) and only rank 0 logs and writes.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(batch)`` returns an object with a scalar ``.loss`` and optional ``.metrics`` dict.
    make_train_batches : callable
        ``(epoch, rank, world_size) -> iterable of batches``; see the module docstring.
    make_val_batches : callable or None
        ``(rank, world_size) -> iterable of batches``; None monitors the training loss instead.
    cfg : TrainConfig
        Optimiser, schedule, early stopping, seed and device settings.
    out_dir : Path, optional
        Where rank 0 writes ``checkpoint.pt`` (every epoch, atomically) and ``train_log.jsonl``
        (one line per epoch). Give every rank the same folder.
    steps_per_epoch : int, optional
        Batches per epoch on each rank, which sizes the learning-rate schedule
        (``cfg.epochs * ceil(steps_per_epoch / grad_accumulation)`` optimizer steps). None counts the
        batches of epoch 0 once before training, which costs one pass over the data but no model work.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` exactly where it stopped (a fresh start, with a warning,
        when there is none). The config must match the checkpoint's, except device and mixed_precision.
    progress : bool
        Show a transient Rich progress bar (epoch, loss, items/s) on rank 0.
    description : str
        Label for the progress bar and the log lines.
    score_fn : callable, optional
        ``score_fn(model) -> float``, higher is better (e.g. a validation AUC), called after every epoch on
        every rank with the model in eval mode. When given, early stopping and the best weights follow
        this score instead of the validation loss (monitored as ``-score``); it is logged as ``val_score``.
    lr_scales : mapping of str to float, optional
        Learning-rate multipliers by parameter-name prefix (see :func:`optimizer_param_groups`).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        On an unusable device, ``resume`` without ``out_dir``, a checkpoint written with another config
        or world size, or an epoch without training batches.
    ArtifactError
        If the checkpoint to resume from is unreadable or does not fit the model.
    """
    if resume and out_dir is None:
        raise ConfigError("resume=True needs out_dir, the folder that holds checkpoint.pt")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    device = resolve_device(cfg.device)
    rank, world_size = _init_distributed(device)
    main = rank == 0
    ckpt_path = Path(out_dir) / CHECKPOINT_FILE if out_dir is not None else None
    state = _find_checkpoint(ckpt_path, cfg, world_size, description) if resume else None

    if state is not None:
        total_steps, batches_per_epoch = int(state["total_steps"]), int(state["batches_per_epoch"])
    else:  # counted before seeding, so that counting cannot shift any random draw
        batches_per_epoch = steps_per_epoch or _count_batches(make_train_batches(0, rank, world_size))
        if world_size > 1:
            batches_per_epoch = int(_all_reduce(torch.tensor([batches_per_epoch], device=device), "max")[0])
        if batches_per_epoch == 0:
            raise ConfigError("make_train_batches yielded no batches for epoch 0; is the training set empty?")
        total_steps = cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accumulation)

    _seed_everything(cfg.seed + rank)
    model.to(device)
    groups = optimizer_param_groups(model, cfg.weight_decay, cfg.learning_rate, lr_scales)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    warmup_steps = int(cfg.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
    amp_dtype = None
    if device.type == "cuda" and cfg.mixed_precision:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    stopping = _EarlyStopping(cfg.patience, cfg.min_delta)
    history: list[dict] = []
    if state is not None:
        _restore(state, rank, model, optimizer, scheduler, scaler, ckpt_path)
        stopping.load_state_dict(state)
        history = list(state["history"])
    if main and out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        _write_log(Path(out_dir) / LOG_FILE, history)  # rewritten from the checkpoint: no duplicated epochs
    net: torch.nn.Module = model
    if world_size > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    with _progress_bar(progress and main) as bar:
        for epoch in range(len(history), cfg.epochs):
            if stopping.stopped:
                break
            label = f"{description} {epoch + 1}/{cfg.epochs}"
            task = bar.add_task(label, total=batches_per_epoch, loss=math.nan, speed=0.0)
            started = time.perf_counter()

            def show(loss_sum: torch.Tensor, items: int, stepped: bool, task=task, started=started) -> None:
                if bar.disable:
                    return
                fields = {}
                if stepped:  # .item() syncs the GPU: once per optimizer step, only while the bar shows
                    fields = {"loss": loss_sum.item() / max(items, 1), "speed": items / (time.perf_counter() - started)}
                bar.update(task, advance=1, **fields)

            train_sums, lr = _train_epoch(
                net, model, make_train_batches(epoch, rank, world_size), optimizer, scheduler, scaler, amp_dtype,
                device, cfg, show,
            )  # fmt: skip
            train_seconds = time.perf_counter() - started
            val_sums = (
                _evaluate(model, make_val_batches(rank, world_size), device, amp_dtype) if make_val_batches else {}
            )
            bar.remove_task(task)
            t = _all_reduce_sums(train_sums, device, world_size)
            v = _all_reduce_sums(val_sums, device, world_size) if val_sums else None
            entry = _history_entry(epoch, t, v, lr, time.perf_counter() - started, train_seconds)
            monitored = entry["train_loss"] if v is None else entry["val_loss"]
            if score_fn is not None:
                model.eval()
                entry["val_score"] = float(score_fn(model))
                monitored = -entry["val_score"]
            history.append(entry)
            stopping.update(epoch, monitored, model)

            rng = _gather(_rng_state(), world_size)
            if main and out_dir is not None:
                _save_checkpoint(
                    ckpt_path,
                    {
                        "format": CHECKPOINT_FORMAT, "next_epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else {}, "rng": rng,
                        "history": history, "total_steps": total_steps, "batches_per_epoch": batches_per_epoch,
                        "world_size": world_size, "config": config_to_dict(cfg), **stopping.state_dict(),
                    },
                )  # fmt: skip
                _append_log(Path(out_dir) / LOG_FILE, entry)
            if main:
                val = "-" if v is None else f"{entry['val_loss']:.5g}"
                log.info(
                    "%s: train_loss %.5g, val_loss %s, lr %.3g, %.0f items/s",
                    label, entry["train_loss"], val, lr, entry["items_per_s"],
                )  # fmt: skip
                if stopping.stopped:
                    log.info("%s: no improvement for %d epochs, stopping early", description, cfg.patience)

    if stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
    elif main:
        log.warning("%s: no epoch had a finite loss; keeping the last weights", description)
    model.eval()
    return TrainResult(stopping.best_epoch, stopping.best_loss, len(history), stopping.stopped, history)


@dataclass
class _EarlyStopping:
    """Patience on the monitored loss; keeps a CPU copy of the best weights."""

    patience: int
    min_delta: float
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, loss: float, model: torch.nn.Module) -> None:
        if loss < self.best_loss - self.min_delta:  # NaN never improves
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = {k: w.detach().to("cpu", copy=True) for k, w in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped, "best_state": self.best_state,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        self.bad_epochs, self.stopped = int(state["bad_epochs"]), bool(state["stopped_early"])
        self.best_state = state["best_state"]


# --- one epoch ---------------------------------------------------------------------------------------------


def _train_epoch(
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
    """Item-weighted sums of the loss and metrics over one epoch, and the lr of its last step."""
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
            sums["grad_norm"] += _clip_and_step(model.parameters(), optimizer, scheduler, scaler, cfg.clip_norm)
            sums["steps"] += 1
        show(sums["loss"], items, step)
    sums["items"] += items
    return sums, lr


@torch.no_grad()
def _evaluate(
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


def _clip_and_step(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    clip_norm: float,
) -> torch.Tensor:
    """Clip the gradients' total norm to ``clip_norm``, step optimizer and schedule; the norm before clipping."""
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


def _history_entry(
    epoch: int, t: dict[str, float], v: dict[str, float] | None, lr: float, seconds: float, train_seconds: float
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": _ratio(t["loss"], t["items"]),
        "val_loss": _ratio(v["loss"], v["items"]) if v is not None else None,
        "lr": lr,
        "grad_norm": _ratio(t["grad_norm"], t["steps"]),
        "seconds": seconds,
        "items_per_s": t["items"] / train_seconds if train_seconds > 0 else math.nan,
    }
    for prefix, sums in (("train", t), ("val", v or {})):
        for key, value in sums.items():
            if key.startswith("metric:"):
                entry[f"{prefix}_{key.removeprefix('metric:')}"] = _ratio(value, sums["items"])
    return entry


def _add_metrics(sums: dict[str, Any], metrics: dict[str, Any] | None, n: int) -> None:
    """Add item-weighted metrics: tensors stay on their device (no sync), floats stay Python floats."""
    for name, value in (metrics or {}).items():
        key = f"metric:{name}"
        weighted = value.detach().double() * n if isinstance(value, torch.Tensor) else float(value) * n
        sums[key] = sums[key] + weighted if key in sums else weighted


# --- distributed ------------------------------------------------------------------------------------------


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size), initialising the process group under torchrun when nobody has yet."""
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size()


def _all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce over ranks, then take rank 0's result so every rank holds bit-identical numbers."""
    dist.all_reduce(values, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    dist.broadcast(values, src=0)
    return values


def _all_reduce_sums(sums: dict[str, Any], device: torch.device, world_size: int) -> dict[str, float]:
    keys = sorted(sums)
    values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64).to(device).reshape(()) for k in keys])
    if world_size > 1:
        values = _all_reduce(values)
    return dict(zip(keys, values.tolist(), strict=True))


def _gather(obj: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


# --- reproducibility and checkpoints ---------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values, loadable with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }  # fmt: skip


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    nps = rng["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, nps["pos"], nps["has_gauss"], nps["cached_gaussian"]))
    py = rng["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))


def _find_checkpoint(path: Path, cfg: TrainConfig, world_size: int, description: str) -> dict[str, Any] | None:
    if not path.exists():
        if is_main_process():
            log.warning("%s: no checkpoint at %s; training from epoch 0", description, path)
        return None
    state = load_checkpoint(path)
    _check_resumable(state, cfg, world_size, path)
    if is_main_process():
        log.info("%s: resuming from %s after epoch %d", description, path, int(state["next_epoch"]) - 1)
    return state


def _check_resumable(state: dict[str, Any], cfg: TrainConfig, world_size: int, path: Path) -> None:
    saved, now = state["config"], config_to_dict(cfg)
    changed = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if changed:
        diff = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(
            f"cannot resume from {path}: it was written with other training settings ({diff}); "
            "resume with the same TrainConfig, or train from scratch without resume"
        )
    if int(state["world_size"]) != world_size:
        raise ConfigError(
            f"cannot resume from {path}: it was written by {state['world_size']} process(es), this run has "
            f"{world_size}; the data shards would differ. Resume with the same number of processes."
        )


def _restore(
    state: dict[str, Any],
    rank: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    path: Path,
) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ArtifactError(f"checkpoint {path} does not fit this model ({e}); was it written for another?") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"][rank])


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact


def _write_log(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(_json_line(entry) for entry in history))
    os.replace(tmp, path)


def _append_log(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(_json_line(entry))


def _json_line(entry: dict[str, Any]) -> str:
    """One strict-JSON line: non-finite numbers become null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()}
    return json.dumps(clean) + "\n"


# --- small helpers ----------------------------------------------------------------------------------------


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[speed]:,.0f} items/s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


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


def _count_batches(batches: Iterable[Any]) -> int:
    return sum(1 for _ in batches)


def _batch_items(batch: Any) -> int:
    size = getattr(batch, "size", None)
    return int(size) if isinstance(size, int | np.integer) else len(batch)


def _zero(device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=torch.float64, device=device)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan
