"""Two forward passes side by side, each on half of PyTorch's threads.

The encoders custseq scores with are small (64 wide, a few layers, a few tokens per customer): on two threads a
pass keeps its second thread half idle between operators. Two independent passes (the fine-tuned network and the
pre-trained next-event head, over the same window) run side by side on one thread each instead of one after the
other on two: 73.7 s -> 66.6 s for both at a million customers on a 2-core machine (benchmarks/RESULTS.md,
"scoring's two forward passes side by side").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def side_by_side(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """``(first(), second())``, run at the same time when PyTorch has at least two threads, each given half.

    ``second`` runs in a daemon thread: an interrupted run (Ctrl-C) does not wait for it, a failing ``first``
    does. An exception of either is raised here, ``first``'s before ``second``'s; PyTorch's thread count is
    restored in any case.
    """
    threads = torch.get_num_threads()
    if threads < 2:
        return first(), second()
    outcome: _Outcome[U] = _Outcome()

    def run_second() -> None:
        try:
            outcome.value = second()
        except BaseException as e:  # handed to the caller's thread
            outcome.error = e
        finally:
            outcome.done.set()

    with torch_threads(threads // 2):
        worker = threading.Thread(target=run_second, name="custseq-side-by-side", daemon=True)
        worker.start()
        try:
            result = first()
        except Exception:
            outcome.done.wait()  # before the caller removes what second() may still be reading
            raise
        outcome.done.wait()
    if outcome.error is not None:
        raise outcome.error
    return result, outcome.value  # type: ignore[return-value]  # set, since second() returned


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` inside the block, and restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
