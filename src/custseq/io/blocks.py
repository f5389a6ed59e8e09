"""Record batches regrouped into tables of an exact number of rows (the last one may be short)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


def exact_blocks(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows made of ``batches`` in order, whatever their sizes; the last one holds the
    rest (none when there is no row)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)
