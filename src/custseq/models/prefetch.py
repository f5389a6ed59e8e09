"""Batches made in a background thread while the network runs on the previous ones.

Making a batch (Arrow takes, padding, feature look-ups) is NumPy/Arrow work and a forward pass is PyTorch work;
both release the GIL for most of their time, so on a CPU they overlap. The batches come out in the order the
iterator makes them, so the numbers are the same as without the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

PREFETCH_DEPTH = 2  # batches made ahead: enough to hide the making of one, little memory
_DONE = object()
_WAIT_S = 0.1  # how often a blocked producer checks whether the consumer has gone


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = PREFETCH_DEPTH) -> Iterator[T]:
    """``items`` made up to ``depth`` ahead in a thread; an exception there is raised here, at its place.

    When the consumer stops early (``break``, an exception, the generator closed), the thread stops after the
    item it is making and the iterator is closed in it.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    made: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(items, made, stop), name="custseq-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = made.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]  # anything but the two markers is an item of the iterator
    finally:
        stop.set()
        producer.join()


def _produce(items: Iterator[T], made: queue.Queue[object], stop: threading.Event) -> None:
    try:
        for item in items:
            if not _put(made, item, stop):
                return
        _put(made, _DONE, stop)
    except BaseException as e:  # handed to the consumer, which raises it where the item was due
        _put(made, _Failed(e), stop)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _put(made: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put ``item`` once there is room; False when the consumer stopped first."""
    while not stop.is_set():
        try:
            made.put(item, timeout=_WAIT_S)
            return True
        except queue.Full:
            continue
    return False
