"""Record batches regrouped into tables of an exact size."""

from __future__ import annotations

import pyarrow as pa
import pytest

from custseq.io.blocks import exact_blocks


def _batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())})


def test_batches_of_any_size_come_out_in_blocks_of_the_size_in_order():
    batches = [_batch(0, 3), _batch(3, 0), _batch(3, 6), _batch(9, 1)]
    blocks = list(exact_blocks(batches, 4))
    assert [b.num_rows for b in blocks] == [4, 4, 2]
    assert [x for b in blocks for x in b.column("x").to_pylist()] == list(range(10))


def test_no_rows_give_no_block_and_a_size_below_one_is_refused():
    assert list(exact_blocks([_batch(0, 0)], 4)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(exact_blocks([_batch(0, 2)], 0))
