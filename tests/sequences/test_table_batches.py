"""SequenceStream.table_batches: a shard held in memory is batched as its file is (the in-memory scoring path)."""

from __future__ import annotations

import pandas as pd
import torch
from tests.sequences.test_build import build, daily_rows

from custseq.config import SequenceConfig
from custseq.sequences.batch import SequenceStream, shard_files


def test_a_table_gives_the_batches_of_its_file(tmp_path):
    # 23 customers of 1 to 9 tokens: with batches of 4 and buffers of 8, several buffers, each sorted by length
    rows = [r for i in range(23) for r in daily_rows(f"c{i:02d}", 1 + (i * 5) % 9)]
    history = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "quantity"])
    table, vocab = build(history, tmp_path, SequenceConfig(max_events=6))
    stream = SequenceStream(tuple(shard_files(tmp_path)), vocab, 6, batch_size=4, shuffle=False, bucket_batches=2)
    from_file, from_table = list(stream.batches()), list(stream.table_batches(table))
    assert len(from_file) == len(from_table) == 6  # buffers of 8, 8 and 7 customers, two batches each
    for f, t in zip(from_file, from_table, strict=True):
        assert f.customer_ids == t.customer_ids
        assert torch.equal(f.lengths, t.lengths) and torch.equal(f.mask, t.mask) and torch.equal(f.numeric, t.numeric)
        assert all(torch.equal(f.categorical[k], t.categorical[k]) for k in f.categorical)
    assert from_table[0].lengths.max() <= from_table[1].lengths.min()  # a buffer is batched short to long
