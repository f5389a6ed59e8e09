"""Each rank's data shard: a seeded per-epoch permutation of the items, padded to equal shards."""

from __future__ import annotations

import numpy as np
import pytest

from custseq.errors import ConfigError
from custseq.models.distributed import shard_indices


def test_shard_indices_cover_everything_in_equal_seeded_shards():
    shards = [shard_indices(10, epoch=0, seed=7, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(np.concatenate(shards)) == set(range(10))
    assert np.array_equal(shards[0], shard_indices(10, 0, 7, 0, 3))
    assert sorted(shard_indices(10, 0, 7)) == list(range(10))
    assert not np.array_equal(shard_indices(10, 0, 7), shard_indices(10, 1, 7))
    with pytest.raises(ConfigError, match="rank must be in"):
        shard_indices(10, 0, 7, rank=3, world_size=3)
