"""The training loop shared by pre-training and every fine-tuning: plain PyTorch, outside the model.

AdamW (no weight decay on biases, norm scales or embeddings), linear warm-up then cosine decay to 0,
gradient accumulation and clipping, early stopping on the validation loss that restores the best
weights, a JSON-lines log, a checkpoint every epoch with exact resume, mixed precision on CUDA, and
distributed data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU) where only rank 0 writes.
This module runs the epochs; each of those parts has its own module: :mod:`~custseq.models.optimization`,
:mod:`~custseq.models.epoch`, :mod:`~custseq.models.early_stopping`, :mod:`~custseq.models.checkpoints`,
:mod:`~custseq.models.history`, :mod:`~custseq.models.distributed` and :mod:`~custseq.models.progress`.

The batch contract
------------------
``make_train_batches(epoch, rank, world_size)`` returns the batches of one epoch for one rank and
``make_val_batches(rank, world_size)`` the validation batches. Both must be pure functions of their
arguments (derive any shuffling from ``epoch`` and ``cfg.seed``, e.g. with
:func:`~custseq.models.distributed.shard_indices`), because that is what makes a resumed run identical
to an uninterrupted one. Under DDP every rank must yield the same number of training batches
(:func:`~custseq.models.distributed.shard_indices` pads to equal shards).
A batch has ``.to(device)`` returning the moved batch and an integer ``.size`` or ``len()``
(items, i.e. customers, for throughput and item-weighted means). ``model(batch)`` returns an object
with a scalar ``.loss`` tensor and optionally ``.metrics``, a dict of floats or scalar tensors.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from custseq.config import TrainConfig
from custseq.errors import ConfigError
from custseq.models.checkpoints import (
    CHECKPOINT_FILE,
    check_resumable,
    load_checkpoint,
    restore_checkpoint,
    rng_state,
    save_checkpoint,
)
from custseq.models.distributed import (
    all_reduce,
    all_reduce_sums,
    gather,
    init_distributed,
    is_main_process,
    resolve_device,
)
from custseq.models.early_stopping import EarlyStopping
from custseq.models.epoch import count_batches, evaluate, mixed_precision, train_epoch
from custseq.models.history import LOG_FILE, append_log, history_entry, write_log
from custseq.models.optimization import build_optimizer
from custseq.models.progress import TrainingProgress, training_display
from custseq.progress import RunProgress

log = logging.getLogger(__name__)


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


def train(
    model: torch.nn.Module,
    make_train_batches: Callable[[int, int, int], Iterable[Any]],
    make_val_batches: Callable[[int, int], Iterable[Any]] | None,
    cfg: TrainConfig,
    *,
    out_dir: Path | None = None,
    steps_per_epoch: int | None = None,
    resume: bool = False,
    progress: bool | RunProgress = True,
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
    progress : bool or RunProgress
        Show, on rank 0, a bar over the run and one over the current epoch (loss, items/s), each with its time
        left (off a terminal, a line per epoch); on the given display, or on one of its own on stderr when True.
    description : str
        Label for the progress bar and the log lines.
    score_fn : callable, optional
        ``score_fn(model) -> float``, higher is better (e.g. a validation AUC), called after every epoch on
        every rank with the model in eval mode. When given, early stopping and the best weights follow
        this score instead of the validation loss (monitored as ``-score``); it is logged as ``val_score``.
    lr_scales : mapping of str to float, optional
        Learning-rate multipliers by parameter-name prefix (see
        :func:`~custseq.models.optimization.optimizer_param_groups`).

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
    _check_arguments(resume, out_dir, steps_per_epoch)
    device = resolve_device(cfg.device)
    rank, world_size = init_distributed(device)
    ckpt_path = Path(out_dir) / CHECKPOINT_FILE if out_dir is not None else None
    # _check_arguments has made sure that resume=True comes with an out_dir, hence a ckpt_path.
    state = _checkpoint_to_resume(ckpt_path, cfg, world_size, description) if resume and ckpt_path is not None else None
    total_steps, per_epoch = _schedule_size(state, make_train_batches, steps_per_epoch, cfg, device, rank, world_size)

    _seed_everything(cfg.seed + rank)
    model.to(device)
    optimizer, scheduler = build_optimizer(model, cfg, total_steps, lr_scales)
    amp_dtype, scaler = mixed_precision(device, cfg.mixed_precision)
    run = _Run(
        cfg=cfg, model=model, net=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        amp_dtype=amp_dtype, device=device, rank=rank, world_size=world_size, total_steps=total_steps,
        batches_per_epoch=per_epoch, stopping=EarlyStopping(cfg.patience, cfg.min_delta), history=[],
        out_dir=out_dir, description=description,
    )  # fmt: skip
    if state is not None and ckpt_path is not None:  # a state is only ever read from ckpt_path
        _resume(run, state, ckpt_path)
    if run.main and out_dir is not None:
        _start_log(Path(out_dir), run.history)
    run.net = _data_parallel(model, device, world_size)

    with training_display(progress, run.main) as shown:
        bars = TrainingProgress(shown, description, cfg.epochs, len(run.history), per_epoch)
        for epoch in range(len(run.history), cfg.epochs):
            if run.stopping.stopped:
                break
            _run_epoch(run, epoch, bars, make_train_batches, make_val_batches, score_fn)
        bars.close(run.stopping.stopped, cfg.patience)
    return _finish(run)


@dataclass
class _Run:
    """One call of :func:`train`: its settings and the state it carries from epoch to epoch."""

    cfg: TrainConfig
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    device: torch.device
    rank: int
    world_size: int
    total_steps: int
    batches_per_epoch: int
    stopping: EarlyStopping
    history: list[dict]
    out_dir: Path | None
    description: str

    @property
    def main(self) -> bool:
        """Whether this process logs and writes (rank 0)."""
        return self.rank == 0


# --- before the first epoch -------------------------------------------------------------------------------


def _check_arguments(resume: bool, out_dir: Path | None, steps_per_epoch: int | None) -> None:
    if resume and out_dir is None:
        raise ConfigError("resume=True needs out_dir, the folder that holds checkpoint.pt")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")


def _checkpoint_to_resume(path: Path, cfg: TrainConfig, world_size: int, description: str) -> dict[str, Any] | None:
    """The checkpoint at ``path``, checked against this run, or None (with a warning) when there is none."""
    if not path.exists():
        if is_main_process():
            log.warning("%s: no checkpoint at %s; training from epoch 0", description, path)
        return None
    state = load_checkpoint(path)
    check_resumable(state, cfg, world_size, path)
    if is_main_process():
        log.info("%s: resuming from %s after epoch %d", description, path, int(state["next_epoch"]) - 1)
    return state


def _schedule_size(
    state: dict[str, Any] | None,
    make_train_batches: Callable[[int, int, int], Iterable[Any]],
    steps_per_epoch: int | None,
    cfg: TrainConfig,
    device: torch.device,
    rank: int,
    world_size: int,
) -> tuple[int, int]:
    """Optimizer steps of the whole run and batches per epoch on each rank: the checkpoint's, or as told or counted.

    Counted before seeding, so that counting cannot shift any random draw; under DDP, the most of any rank.
    """
    if state is not None:
        return int(state["total_steps"]), int(state["batches_per_epoch"])
    batches_per_epoch = steps_per_epoch or count_batches(make_train_batches(0, rank, world_size))
    if world_size > 1:
        batches_per_epoch = int(all_reduce(torch.tensor([batches_per_epoch], device=device), "max")[0])
    if batches_per_epoch == 0:
        raise ConfigError("make_train_batches yielded no batches for epoch 0; is the training set empty?")
    return cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accumulation), batches_per_epoch


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device


def _resume(run: _Run, state: dict[str, Any], path: Path) -> None:
    restore_checkpoint(state, run.rank, run.model, run.optimizer, run.scheduler, run.scaler, path)
    run.stopping.load_state_dict(state)
    run.history = list(state["history"])


def _start_log(out_dir: Path, history: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_log(out_dir / LOG_FILE, history)  # rewritten from the checkpoint: no duplicated epochs


def _data_parallel(model: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel under torchrun, else ``model`` itself."""
    if world_size == 1:
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
    )


# --- every epoch ------------------------------------------------------------------------------------------


def _run_epoch(
    run: _Run,
    epoch: int,
    bars: TrainingProgress,
    make_train_batches: Callable[[int, int, int], Iterable[Any]],
    make_val_batches: Callable[[int, int], Iterable[Any]] | None,
    score_fn: Callable[[torch.nn.Module], float] | None,
) -> None:
    """Train and validate one epoch, then record it: history, early stopping, checkpoint, log."""
    label = f"{run.description} {epoch + 1}/{run.cfg.epochs}"
    entry = _fit_epoch(run, epoch, bars, make_train_batches, make_val_batches)
    monitored = _score_epoch(entry, run.model, score_fn)
    run.history.append(entry)
    run.stopping.update(epoch, monitored, run.model)
    _save_epoch(run, epoch, entry)
    if run.main:
        _log_epoch(run, label, entry)


def _fit_epoch(
    run: _Run,
    epoch: int,
    bars: TrainingProgress,
    make_train_batches: Callable[[int, int, int], Iterable[Any]],
    make_val_batches: Callable[[int, int], Iterable[Any]] | None,
) -> dict[str, Any]:
    """One epoch of training then validation; its history entry, with sums over all ranks."""
    shown = bars.start_epoch(epoch)
    train_sums, lr = train_epoch(
        run.net, run.model, make_train_batches(epoch, run.rank, run.world_size), run.optimizer, run.scheduler,
        run.scaler, run.amp_dtype, run.device, run.cfg, shown.show,
    )  # fmt: skip
    train_seconds = time.perf_counter() - shown.started
    val_sums = (
        evaluate(run.model, make_val_batches(run.rank, run.world_size), run.device, run.amp_dtype)
        if make_val_batches
        else {}
    )
    t = all_reduce_sums(train_sums, run.device, run.world_size)
    v = all_reduce_sums(val_sums, run.device, run.world_size) if val_sums else None
    entry = history_entry(epoch, t, v, lr, time.perf_counter() - shown.started, train_seconds)
    shown.finish(entry)
    return entry


def _score_epoch(
    entry: dict[str, Any], model: torch.nn.Module, score_fn: Callable[[torch.nn.Module], float] | None
) -> float:
    """The loss early stopping monitors: ``-score_fn(model)`` when given, else validation, else training loss.

    The score is also added to ``entry`` as ``val_score``.
    """
    monitored = entry["train_loss"] if entry["val_loss"] is None else entry["val_loss"]
    if score_fn is not None:
        model.eval()
        entry["val_score"] = float(score_fn(model))
        monitored = -entry["val_score"]
    return monitored


def _save_epoch(run: _Run, epoch: int, entry: dict[str, Any]) -> None:
    """Checkpoint the run after ``epoch`` and append its log line (rank 0 only, and only with an out_dir)."""
    rng = gather(rng_state(), run.world_size)  # a collective: every rank takes part, though only rank 0 writes
    if run.main and run.out_dir is not None:
        save_checkpoint(
            Path(run.out_dir) / CHECKPOINT_FILE, next_epoch=epoch + 1, model=run.model, optimizer=run.optimizer,
            scheduler=run.scheduler, scaler=run.scaler, rng=rng, history=run.history, total_steps=run.total_steps,
            batches_per_epoch=run.batches_per_epoch, world_size=run.world_size, cfg=run.cfg,
            early_stopping=run.stopping.state_dict(),
        )  # fmt: skip
        append_log(Path(run.out_dir) / LOG_FILE, entry)


def _log_epoch(run: _Run, label: str, entry: dict[str, Any]) -> None:
    val = "-" if entry["val_loss"] is None else f"{entry['val_loss']:.5g}"
    log.info(
        "%s: train_loss %.5g, val_loss %s, lr %.3g, %.0f items/s",
        label, entry["train_loss"], val, entry["lr"], entry["items_per_s"],
    )  # fmt: skip
    if run.stopping.stopped:
        log.info("%s: no improvement for %d epochs, stopping early", run.description, run.cfg.patience)


# --- after the last epoch ---------------------------------------------------------------------------------


def _finish(run: _Run) -> TrainResult:
    """Put the best weights back, hand the model back in eval mode, and say what happened."""
    stopping = run.stopping
    if stopping.best_state is not None:
        run.model.load_state_dict(stopping.best_state)
    elif run.main:
        log.warning("%s: no epoch had a finite loss; keeping the last weights", run.description)
    run.model.eval()
    return TrainResult(stopping.best_epoch, stopping.best_loss, len(run.history), stopping.stopped, run.history)
