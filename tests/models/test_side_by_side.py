"""Two passes side by side: both results, at the same time on half the threads each, errors raised in order,
PyTorch's thread count restored, and one after the other when there is a single thread."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from custseq.models.side_by_side import side_by_side, torch_threads

WAIT = 10  # seconds: far beyond what the other side needs; a sequential run fails here instead of hanging


def test_both_run_at_the_same_time_on_half_the_threads_each():
    second_started = threading.Event()
    seen: dict[str, object] = {}

    def first() -> str:
        seen["first"] = (threading.get_ident(), torch.get_num_threads(), second_started.wait(WAIT))
        return "a"

    def second() -> str:
        second_started.set()
        seen["second"] = (threading.get_ident(), torch.get_num_threads())
        return "b"

    with torch_threads(4):
        assert side_by_side(first, second) == ("a", "b")
        assert torch.get_num_threads() == 4
    caller = threading.get_ident()
    assert seen["first"] == (caller, 2, True)  # the second started while the first ran
    ident, threads = seen["second"]  # type: ignore[misc]
    assert ident != caller and threads == 2


def test_one_thread_runs_them_one_after_the_other_in_the_callers_thread():
    order = []
    with torch_threads(1):
        result = side_by_side(lambda: order.append(("first", threading.get_ident())) or 1,
                              lambda: order.append(("second", threading.get_ident())) or 2)  # fmt: skip
    assert result == (1, 2)
    assert order == [("first", threading.get_ident()), ("second", threading.get_ident())]


def test_a_failing_first_is_raised_after_the_second_finished():
    finished = threading.Event()

    def first() -> None:
        raise ValueError("first failed")

    def second() -> None:
        threading.Event().wait(0.2)  # still running when the first fails
        finished.set()

    with torch_threads(2):
        with pytest.raises(ValueError, match="first failed"):
            side_by_side(first, second)
        assert torch.get_num_threads() == 2  # restored after the failure
    assert finished.is_set()  # it may read files the caller removes once the error goes up


def test_a_failing_second_is_raised_once_the_first_is_done():
    done = []
    with torch_threads(2):
        with pytest.raises(KeyError, match="second failed"):
            side_by_side(lambda: done.append("first"), lambda: (_ for _ in ()).throw(KeyError("second failed")))
        assert torch.get_num_threads() == 2  # restored after the failure
    assert done == ["first"]


def test_an_interrupted_first_does_not_wait_for_the_second():
    release = threading.Event()

    def first() -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with torch_threads(2), pytest.raises(KeyboardInterrupt):
        side_by_side(first, lambda: release.wait(WAIT))  # waited for, it would take WAIT seconds
    assert time.monotonic() - started < WAIT / 2
    release.set()  # let the daemon thread end
