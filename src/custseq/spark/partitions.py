"""The per-customer stages on Spark: DuckDB runs custseq's own SQL on each range of customers.

The clean tables are range-partitioned by ``customer_id`` and every partition runs
:func:`custseq.pipelines.ranges.range_outputs` on its customers, inside a Spark task: the DuckDB engine's own
functions, so there is one definition of every feature and of the ordered token lists (``list(… ORDER BY ts,
token_type, row_id)``, which no SQL transpiler carries to Spark faithfully), and concatenating the partitions in
range order gives the DuckDB engine's row order. What is not per customer (the numeric statistics, the first timed
day) comes from the whole data, as :mod:`custseq.pipelines.ranges` says.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.io.engine import connect
from custseq.pipelines.ranges import PartitionWork, range_outputs

TABLE_TAG = "__table"
KEY = "__key"
# One output table of a partition: inline as Arrow IPC bytes (``payload``), or as the Parquet file a task wrote in
# the staging folder (``path``), the other one null.
OUTPUT_SCHEMA = pa.schema(
    [("kind", pa.string()), ("key", pa.string()), ("payload", pa.binary()), ("path", pa.string())]
)


def prefixed(table: str, column: str) -> str:
    """The name of a clean table's column in the one frame that carries every table to the partitions."""
    return f"{table[0]}__{column}"


def run_partition(batches: Iterable[pa.RecordBatch], work: PartitionWork, job: str) -> Iterator[pa.RecordBatch]:
    """The outputs of one partition's customers: ``job`` ``"sums"`` (numeric statistics) or ``"windows"``.

    Yields record batches of :data:`OUTPUT_SCHEMA`, one per output table: inline, or, for the windows when
    ``work.staging`` is set, written to a file of its own there (:func:`_staged`).
    """
    rows = pa.Table.from_batches(list(batches))
    if rows.num_rows == 0:
        return
    engine = dataclasses.replace(work.config.engine, threads=work.config.engine.threads or 1)
    con = connect(engine)
    try:
        _register(con, rows, work)
        for n, (kind, key, table) in enumerate(range_outputs(con, work, job)):
            yield _staged(kind, key, table, work.staging, n) if work.staging else _inline(kind, key, table)
    finally:
        con.close()


def _register(con: duckdb.DuckDBPyConnection, rows: pa.Table, work: PartitionWork) -> None:
    for table, clean in work.tables.items():
        part = rows.filter(pc.equal(rows[TABLE_TAG], table))
        columns = work.columns[table]
        part = pa.table({c: part[prefixed(table, c)] for c in columns})
        con.register("__part", part)
        con.execute(f"CREATE TEMP TABLE {clean.sql_name} AS SELECT * FROM __part")
        con.unregister("__part")


def _inline(kind: str, key: str, table: pa.Table) -> pa.RecordBatch:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return _batch(kind, key, sink.getvalue().to_pybytes(), None)


def _staged(kind: str, key: str, table: pa.Table, staging: str, n: int) -> pa.RecordBatch:
    """Write ``table`` to the staging folder, as the ``n``-th output of this task's partition.

    The name depends on the partition and ``n`` only, and the file appears whole (written under a name of its own
    attempt, then renamed), so a retried or speculative attempt of the task leaves one complete, identical file.
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    partition, attempt = (context.partitionId(), context.attemptNumber()) if context else (0, 0)
    path = Path(staging) / f"part-{partition:05d}" / f"{n:04d}-{kind}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.attempt-{attempt}")
    pq.write_table(table, draft)
    os.replace(draft, path)
    return _batch(kind, key, None, str(path))


def read_output(payload: bytes | None, path: str | None) -> pa.Table:
    """An output table of a partition, from a row of :data:`OUTPUT_SCHEMA`."""
    if path is not None:
        return pq.read_table(path)
    assert payload is not None
    return pa.ipc.open_stream(pa.BufferReader(payload)).read_all()


def _batch(kind: str, key: str, payload: bytes | None, path: str | None) -> pa.RecordBatch:
    columns = [pa.array([kind]), pa.array([key]), pa.array([payload], pa.binary()), pa.array([path], pa.string())]
    return pa.record_batch(columns, schema=OUTPUT_SCHEMA)


def partition_count(rows: int, rows_per_partition: int) -> int:
    """How many customer ranges ``rows`` clean rows are cut into."""
    return max(1, math.ceil(rows / rows_per_partition))
