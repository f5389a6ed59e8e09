"""Training checkpoints: what one holds, writing it atomically every epoch, and reading it back to resume exactly.

A checkpoint is tensors and plain data only (``torch.load(weights_only=True)`` reads it), including the
global random states of every rank, so that a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch

from custseq.config import TrainConfig, config_to_dict
from custseq.errors import ArtifactError, ConfigError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# Settings that may change between an interrupted run and its resumption (they move, not change, the math).
_RESUMABLE_CHANGES = ("device", "mixed_precision")
_CHECKPOINT_KEYS = (
    "format", "next_epoch", "model", "optimizer", "scheduler", "scaler", "rng", "best_state", "best_loss",
    "best_epoch", "bad_epochs", "stopped_early", "history", "total_steps", "batches_per_epoch", "world_size", "config",
)  # fmt: skip


def save_checkpoint(
    path: Path,
    *,
    next_epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    rng: list[dict[str, Any]],
    history: list[dict],
    total_steps: int,
    batches_per_epoch: int,
    world_size: int,
    cfg: TrainConfig,
    early_stopping: Mapping[str, Any],
) -> None:
    """Write the state of a run before epoch ``next_epoch`` to ``path``, atomically.

    Parameters
    ----------
    path : Path
        The checkpoint file; a crash while writing leaves the previous one intact.
    next_epoch : int
        The epoch a resumed run starts with.
    model, optimizer, scheduler, scaler
        The training state (``scaler`` None without fp16 mixed precision).
    rng : list of dict
        Every rank's global random states (:func:`rng_state`), in rank order.
    history : list of dict
        One entry per epoch run so far.
    total_steps, batches_per_epoch, world_size : int
        The size of the schedule and of the data shards, which a resumed run must keep.
    cfg : TrainConfig
        The settings, checked on resume.
    early_stopping : mapping
        ``best_loss``, ``best_epoch``, ``bad_epochs``, ``stopped_early`` and ``best_state``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT, "next_epoch": next_epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {}, "rng": rng,
        "history": history, "total_steps": total_steps, "batches_per_epoch": batches_per_epoch,
        "world_size": world_size, "config": config_to_dict(cfg), **early_stopping,
    }  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only, ``weights_only=True``).

    Raises
    ------
    ArtifactError
        If the file is missing, truncated, not a checkpoint, or of another format version.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a link to /dev/zero or a pipe: never read
        raise ArtifactError(f"checkpoint {path} is not a regular file; delete it to train from scratch")
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


def check_resumable(state: dict[str, Any], cfg: TrainConfig, world_size: int, path: Path) -> None:
    """Refuse to resume from ``state`` (read from ``path``) with other settings or another number of processes.

    Raises
    ------
    ConfigError
        If a setting other than device and mixed_precision differs, or the world size does.
    """
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


def restore_checkpoint(
    state: dict[str, Any],
    rank: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    path: Path,
) -> None:
    """Load the training state and this rank's global random states from ``state`` (read from ``path``).

    Raises
    ------
    ArtifactError
        If the weights or the optimizer state do not fit ``model``.
    """
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ArtifactError(f"checkpoint {path} does not fit this model ({e}); was it written for another?") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"][rank])


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, ``random``) as tensors and plain values (``weights_only``-safe)."""
    # The stubs' overload for the default call says dict; the global RandomState (MT19937) gives the legacy tuple.
    legacy = cast(tuple[str, npt.NDArray[np.uint32], int, int, float], np.random.get_state())
    _, keys, pos, has_gauss, cached = legacy
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
