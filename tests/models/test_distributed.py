"""Each rank's data shard: a seeded per-epoch permutation of the items, padded to equal shards."""

from __future__ import annotations

import os

import numpy as np
import pytest

from custseq.errors import ConfigError
from custseq.models.distributed import shard_indices, threads_per_process, worker_environment


def test_shard_indices_cover_everything_in_equal_seeded_shards():
    shards = [shard_indices(10, epoch=0, seed=7, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(np.concatenate(shards)) == set(range(10))
    assert np.array_equal(shards[0], shard_indices(10, 0, 7, 0, 3))
    assert sorted(shard_indices(10, 0, 7)) == list(range(10))
    assert not np.array_equal(shard_indices(10, 0, 7), shard_indices(10, 1, 7))
    with pytest.raises(ConfigError, match="rank must be in"):
        shard_indices(10, 0, 7, rank=3, world_size=3)


@pytest.mark.parametrize(("cores", "nproc", "threads"), [(16, 4, 4), (16, 3, 5), (2, 2, 1), (2, 4, 1), (8, 1, 8)])
def test_torchrun_processes_share_the_machines_cores(monkeypatch, cores, nproc, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_process(nproc) == threads
    env = worker_environment(nproc)
    assert env["OMP_NUM_THREADS"] == str(threads) and env["PYTHONFAULTHANDLER"] == "1"


def test_a_users_own_thread_count_is_kept_for_the_torchrun_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_environment(2)["OMP_NUM_THREADS"] == "3"


def test_without_an_affinity_call_the_cpu_count_is_shared(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert threads_per_process(2) == 3
