"""Where training runs: the device, the ``torchrun`` process group and its collectives, and each rank's data shard.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains on its own shard (:func:`shard_indices`);
:func:`init_distributed` joins the process group (gloo on CPU, NCCL on GPU), the collectives here keep
every rank's numbers bit-identical, and only the main process (:func:`is_main_process`) writes.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from custseq.errors import ConfigError


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


def init_distributed(device: torch.device) -> tuple[int, int]:
    """This process's rank and the world size, initialising the process group under torchrun when nobody has yet.

    Parameters
    ----------
    device : torch.device
        The training device: a CUDA device is made current and selects NCCL, otherwise gloo.

    Returns
    -------
    tuple of int
        ``(rank, world_size)``; ``(0, 1)`` outside torchrun.
    """
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


def is_main_process() -> bool:
    """True unless this process is a non-zero rank of an initialised process group (only rank 0 writes)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown_distributed() -> None:
    """End a torchrun process cleanly: wait for every rank, then destroy the process group ``train`` started.

    Without the barrier a rank can tear its group down while a peer still talks to it, and gloo aborts the
    process at exit ("terminate called without an active exception"). The garbage collector runs first, so that
    what still holds the group (a DistributedDataParallel model in a reference cycle, gloo's finished work) is
    freed now rather than while the interpreter shuts down, when a gloo thread that needs the GIL aborts too.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def exit_finished_worker() -> NoReturn:
    """End a ``torchrun`` worker process whose work is done and written, skipping the interpreter's shutdown.

    A C++ thread (gloo's, c10d's) that still holds Python objects may need the GIL while the interpreter shuts
    down; Python then ends that thread, and the C++ runtime aborts the whole process ("terminate called without
    an active exception", exit -6), failing a run that had finished. Output is flushed first; files are closed.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``values`` in place over ranks (``op`` "sum" or "max"), then take rank 0's result.

    The broadcast makes every rank hold bit-identical numbers, so that all take the same decisions.
    """
    dist.all_reduce(values, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    dist.broadcast(values, src=0)
    return values


def all_reduce_sums(sums: dict[str, Any], device: torch.device, world_size: int) -> dict[str, float]:
    """Sum a dict of scalars (tensors or floats) over ranks, as Python floats in float64, keys sorted."""
    keys = sorted(sums)
    values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64).to(device).reshape(()) for k in keys])
    if world_size > 1:
        values = all_reduce(values)
    return dict(zip(keys, values.tolist(), strict=True))


def gather(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj`` (any picklable object), in rank order, on every rank."""
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


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


def world_size_from_env() -> int:
    """The number of ``torchrun`` processes of this run (``WORLD_SIZE``); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size_from_env() -> int:
    """The number of ``torchrun`` processes on this machine (``LOCAL_WORLD_SIZE``); 1 outside torchrun."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def worker_environment(nproc: int) -> dict[str, str]:
    """The environment of the ``nproc`` ``torchrun`` processes custseq starts on this machine: this one's, with

    * Python's fault handler on, so that a process that aborts (a C++ ``terminate`` in a collective) prints each
      thread's Python stack first;
    * ``OMP_NUM_THREADS`` (unless set already): the machine's cores shared between the processes
      (:func:`threads_per_process`). torchrun would give each one thread, leaving most of a larger machine idle.
    """
    return {"OMP_NUM_THREADS": str(threads_per_process(nproc)), **os.environ, "PYTHONFAULTHANDLER": "1"}


def threads_per_process(nproc: int) -> int:
    """PyTorch threads for each of ``nproc`` processes on this machine: the cores this process may run on, shared
    out evenly, at least one."""
    return max(1, _usable_cores() // max(1, nproc))


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS and Windows have no affinity call
