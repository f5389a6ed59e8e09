"""The per-customer stages on Spark: DuckDB runs custseq's own SQL on each range of customers.

Features, labels, tokens, sequences and daily spend depend only on one customer's rows (and on the settings, the
vocabulary and the windows). So the clean tables are range-partitioned by ``customer_id`` and every partition runs
the DuckDB engine's functions unchanged (:func:`custseq.features.rfm.build_features`,
:func:`custseq.labels.build_labels`, :func:`custseq.sequences.build.build_token_lists` …) on its customers, inside a
Spark task: there is one definition of every feature and of the ordered token lists (``list(… ORDER BY ts,
token_type, row_id)``, which no SQL transpiler carries to Spark faithfully), and concatenating the partitions in
range order gives the DuckDB engine's row order.

Two quantities are not per customer, and are brought in from the whole data:

* the numeric statistics of the vocabulary: each partition returns exact decimal sums, added on the driver
  (:func:`partial_numeric_sums`, :func:`combine_numeric_sums`);
* whether a window's timestamps carry a time of day (the calendar group's hour features): a sentinel row of no
  customer in each partition's hours table carries the whole data's first timed day (:func:`_global_hours`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.config import RunConfig
from custseq.features.rfm import DailyTables, build_daily, build_features
from custseq.io.engine import connect, drop_tables, fetch_arrow, fetch_row
from custseq.labels import build_labels
from custseq.pipelines.prepare import event_types, prospects_table
from custseq.schema import quote_ident
from custseq.sequences.build import build_token_lists, sequences_sql
from custseq.sequences.tokens import TokenLayout, create_tokens
from custseq.sequences.vocab import EXACT, SequenceVocab, encode_tables, signed_log1p_sql
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window

TABLE_TAG = "__table"
KEY = "__key"
# One output table of a partition: inline as Arrow IPC bytes (``payload``), or as the Parquet file a task wrote in
# the staging folder (``path``), the other one null.
OUTPUT_SCHEMA = pa.schema(
    [("kind", pa.string()), ("key", pa.string()), ("payload", pa.binary()), ("path", pa.string())]
)
DAILY_SPEND, FEATURES, LABELS, SEQUENCES, NUMERIC_SUMS = "daily_spend", "features", "labels", "sequences", "sums"
PROSPECTS = "prospects"


def prefixed(table: str, column: str) -> str:
    """The name of a clean table's column in the one frame that carries every table to the partitions."""
    return f"{table[0]}__{column}"


@dataclass(frozen=True)
class PreparedWindowSpec:
    """One window to prepare: its role, whether it is labelled, and how many customers it has in all."""

    role: str
    window: Window
    labelled: bool
    customers: int


@dataclass(frozen=True)
class PartitionWork:
    """Everything a partition needs besides its rows; shipped to the executors (plain, picklable values)."""

    tables: dict[str, CleanTable]  # transactions and, when given, customers and events
    columns: dict[str, tuple[str, ...]]  # each clean table's columns, in order
    config: RunConfig
    layout: TokenLayout
    vocab: SequenceVocab  # its stats are empty for the numeric-sums pass
    token_cutoffs: tuple[dt.datetime, ...]  # orders are split at each; tokens end before the latest
    stats_before: dt.datetime
    windows: tuple[PreparedWindowSpec, ...] = ()
    scoring_cutoff: dt.datetime | None = None
    first_timed_day: dt.date | None = None  # the first day with a purchase line at a time of day, in all the data
    staging: str | None = None  # the folder tasks write their window outputs to; None = sent back inline


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
        tx, ev = work.tables["transactions"], work.tables.get("events")
        encode_tables(con, work.vocab, tx, ev)
        create_tokens(con, work.layout, list(work.token_cutoffs))
        if job == NUMERIC_SUMS:
            yield _inline(NUMERIC_SUMS, "", partial_numeric_sums(con, work.layout, "tokens", work.stats_before))
            return
        for n, (kind, key, table) in enumerate(_windows(con, work)):
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


def _windows(con: duckdb.DuckDBPyConnection, work: PartitionWork) -> Iterator[tuple[str, str, pa.Table]]:
    """(kind, window key, table) of every output of this partition's customers."""
    tx = work.tables["transactions"]
    lists = build_token_lists(con, work.vocab, "tokens")
    drop_tables(con, "tokens", "enc_transactions", "enc_events")
    assert work.scoring_cutoff is not None
    daily = _global_hours(con, tx, build_daily(con, tx, work.scoring_cutoff), work.first_timed_day)
    spend = f"SELECT customer_id, day AS ts, net AS amount FROM {daily.daily} ORDER BY customer_id, day"
    yield DAILY_SPEND, "", fetch_arrow(con, spend)
    features_cfg, types = work.config.features, event_types(work.vocab)
    ev, cust = work.tables.get("events"), work.tables.get("customers")
    for spec in work.windows:
        window = spec.window
        features = build_features(
            con, tx, window, features_cfg, customers=cust, events=ev, event_types=types, daily=daily
        )  # fmt: skip
        yield FEATURES, window.key, features
        if spec.labelled:
            yield LABELS, window.key, build_labels(con, tx, window)
        if ev is not None:
            prospects = prospects_table(con, work.config, window, tx, ev, cust, daily, types, labelled=spec.labelled)
            yield PROSPECTS, window.key, prospects
        n_shards = max(1, math.ceil(spec.customers / work.config.sequence.shard_customers))
        sequences = fetch_arrow(
            con,
            sequences_sql(work.vocab, lists, n_shards=n_shards),
            {"cutoff": window.cutoff, "max_events": work.config.sequence.max_events},
        )
        yield SEQUENCES, window.key, sequences


def _global_hours(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, daily: DailyTables, first_timed_day: dt.date | None
) -> DailyTables:
    """``daily`` whose hours table says, for every cutoff, whether any row of the whole data before it is timed.

    :func:`custseq.features.rfm.build_daily` keeps the hours table only when a row of *these* customers has a time
    of day, and the calendar group reads "timed" from that table's rows before each cutoff. Here the table is
    rebuilt when the partition dropped it, and a row of no customer (NULL, joined to nobody) dated on the whole
    data's first timed day marks the cutoffs after it as timed.
    """
    if first_timed_day is None:
        return daily
    name = daily.hours or "daily_hours"
    if daily.hours is None:  # the same table as rfm._build_hours builds, for this partition's rows
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT customer_id, CAST(ts AS DATE) AS day, hour(ts) AS hour, "
            "count(*) AS n, bool_or(CAST(ts AS TIME) <> TIME '00:00:00') AS timed "
            f"FROM {tx.sql_name} WHERE ts < $until AND NOT is_refund GROUP BY ALL",
            {"until": daily.until},
        )
    con.execute(f"INSERT INTO {name} VALUES (NULL, $day, 0, 1, true)", {"day": first_timed_day})
    return dataclasses.replace(daily, hours=name)


def partial_numeric_sums(
    con: duckdb.DuckDBPyConnection, layout: TokenLayout, tokens: str, before: dt.datetime
) -> pa.Table:
    """Per numeric field: count, exact sum and exact sum of squares of its signed log1p over tokens before
    ``before`` (the terms of :func:`custseq.sequences.vocab.fit_numeric_stats`), as decimal text."""
    numeric = layout.numeric()
    names, counts, sums, squares = [], [], [], []
    if numeric:
        aggs = []
        for f in numeric:
            x = signed_log1p_sql(quote_ident(f.name))
            aggs += [f"count({x})", f"sum(CAST({x} AS {EXACT}))", f"sum(CAST({x} * {x} AS {EXACT}))"]
        row = fetch_row(con, f"SELECT {', '.join(aggs)} FROM {tokens} WHERE ts < $before", {"before": before})
        for i, f in enumerate(numeric):
            names.append(f.name)
            counts.append(int(row[3 * i]))
            sums.append(str(row[3 * i + 1] or 0))
            squares.append(str(row[3 * i + 2] or 0))
    return pa.table({"field": names, "n": pa.array(counts, pa.int64()), "s1": sums, "s2": squares})


def combine_numeric_sums(layout: TokenLayout, partials: Iterable[pa.Table]) -> dict[str, tuple[float, float]]:
    """The vocabulary's (mean, std) per numeric field from the partitions' exact sums, as ``fit_numeric_stats``."""
    counts = {f.name: 0 for f in layout.numeric()}
    sums = {f.name: (Decimal(0), Decimal(0)) for f in layout.numeric()}
    for part in partials:
        for name, n, s1, s2 in zip(*(part[c].to_pylist() for c in ("field", "n", "s1", "s2")), strict=True):
            counts[name] += n
            sums[name] = (sums[name][0] + Decimal(s1), sums[name][1] + Decimal(s2))
    stats = {}
    for name, n in counts.items():
        s1, s2 = sums[name]
        if not n:
            stats[name] = (0.0, 1.0)
            continue
        mean = float(s1) / n
        var = max(float(s2) / n - mean * mean, 0.0)
        stats[name] = (mean, math.sqrt(var) if var > 1e-12 else 1.0)
    return stats


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
