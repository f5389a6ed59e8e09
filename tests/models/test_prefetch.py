"""Batches made ahead in a thread come out as the iterator makes them, failures and early stops included."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from custseq.models.prefetch import prefetched


def test_items_come_out_in_order_and_all_of_them():
    assert list(prefetched(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetched(iter([]))) == []


def test_items_are_made_in_another_thread():
    makers = []

    def made() -> Iterator[int]:
        for i in range(3):
            makers.append(threading.current_thread())
            yield i

    assert list(prefetched(made())) == [0, 1, 2]
    assert threading.current_thread() not in makers


def test_a_failure_is_raised_where_its_item_was_due():
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("customer 7")

    got = []
    with pytest.raises(KeyError, match="customer 7"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_thread_and_closes_the_iterator():
    made, closed = [], threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                made.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()  # what a break out of a for loop does
    assert closed.is_set()
    assert len(made) <= 5 + 2 + 1  # taken, waiting in the queue, and the one being put when it stopped
    assert not any(t.name == "custseq-prefetch" for t in threading.enumerate())


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth"):
        next(prefetched(iter([1]), depth=0))
