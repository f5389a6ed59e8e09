"""The settings of the text tests' small shop, and a way to run code with the network refused."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from custseq.config import EngineConfig, RunConfig, SequenceConfig, TextConfig, WindowConfig

AS_OF = "2024-03-31"  # the shop runs 2023-01-01 + 500 days (to 2024-05-15): the scoring labels are half observed
# One DuckDB thread, as in tests/features/test_leakage.py: the numeric statistics are then bit-for-bit repeatable.
CONFIG = RunConfig(
    window=WindowConfig(horizon_days=60, max_train_windows=3),
    sequence=SequenceConfig(max_events=32, min_count=2, shard_customers=128),
    text=TextConfig(svd_dims=6, max_terms=300),
    engine=EngineConfig(threads=1),
)


class NetworkUsed(AssertionError):
    pass


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to open a connection or resolve a name, from Python code, fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield
