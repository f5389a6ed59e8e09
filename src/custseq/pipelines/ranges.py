"""The per-customer stages a range of customers at a time, on either engine.

Features, labels, tokens, sequences and daily spend depend only on one customer's rows (and on the settings, the
vocabulary and the windows). So customers can be prepared a range of ids at a time, each range by the DuckDB
engine's own functions (:func:`custseq.features.rfm.build_features`, :func:`custseq.labels.build_labels`,
:func:`custseq.sequences.build.build_token_lists` …), and the ranges' outputs appended in id order give the whole
data's files, rows in the same order. Two drivers do so:

* Spark, in its tasks, each on its range's rows (:mod:`custseq.spark.partitions`);
* the DuckDB engine itself when the data hold more rows than its memory limit keeps at once
  (:func:`range_count`, :func:`outputs_by_range`): then each range's working tables (tokens, token lists, daily
  tables) are built, used and dropped before the next range's, instead of every customer's at once, which
  spilled to disk at 5M customers (benchmarks/RESULTS.md, "preparation by ranges of customers").

Two quantities are not per customer, and are brought in from the whole data:

* the numeric statistics of the vocabulary: on Spark each task gives exact decimal sums, added up on the driver
  (:func:`custseq.sequences.vocab.partial_numeric_sums`, ``combine_numeric_sums``); the DuckDB engine sums every
  customer's tokens in one aggregate without keeping them (:func:`custseq.sequences.tokens.tokens_query`);
* whether a window's timestamps carry a time of day (the calendar group's hour features): a sentinel row of no
  customer in each range's hours table carries the whole data's first timed day (:func:`_global_hours`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.config import EngineConfig, RunConfig
from custseq.features.btyd import add_btyd_features
from custseq.features.prospects import prospects_table
from custseq.features.rfm import DailyTables, build_daily, build_features
from custseq.io.engine import drop_tables, fetch_arrow, fetch_row, fetch_scalar
from custseq.io.prepared import DAILY_SPEND_FILE, window_folder
from custseq.io.run_files import PreparedWindow
from custseq.labels import build_labels
from custseq.sequences.build import SHARD_FILE, build_token_lists, sequences_sql
from custseq.sequences.tokens import TokenLayout, create_tokens
from custseq.sequences.vocab import SequenceVocab, encode_tables, event_types, partial_numeric_sums
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window, WindowPlan

DAILY_SPEND, FEATURES, LABELS, SEQUENCES, NUMERIC_SUMS = "daily_spend", "features", "labels", "sequences", "sums"
PROSPECTS = "prospects"
# DuckDB's memory per clean row of a range, for its working tables (encoded rows, tokens, token lists, the daily
# tables: 3.23 GiB for the 6.9M rows of a million synthetic customers, by DuckDB's own accounting) and the queries
# over them. Measured with an 11.75 GiB limit at 5M customers: ranges of 11.6M rows spilled and the process
# peaked at 13.3 GiB, ranges of 3.5M rows did not spill and peaked at 10.1 GiB (benchmarks/RESULTS.md).
RANGE_BYTES_PER_ROW = 750
RANGE_MEMORY_SHARE = 0.5  # of DuckDB's memory limit; the rest is for the clean tables every range is cut from
RANGE_TABLE_PREFIX = "range_"


@dataclass(frozen=True)
class PreparedWindowSpec:
    """One window to prepare: its role, whether it is labelled, and how many customers it has in all."""

    role: str
    window: Window
    labelled: bool
    customers: int


@dataclass(frozen=True)
class PartitionWork:
    """Everything a range of customers needs besides its rows (plain, picklable values: Spark ships them)."""

    tables: dict[str, CleanTable]  # transactions and, when given, customers and events
    columns: dict[str, tuple[str, ...]]  # each clean table's columns, in order (Spark ships rows in one frame)
    config: RunConfig
    layout: TokenLayout
    vocab: SequenceVocab  # its stats are empty for the numeric-sums pass
    token_cutoffs: tuple[dt.datetime, ...]  # orders are split at each; tokens end before the latest
    stats_before: dt.datetime
    windows: tuple[PreparedWindowSpec, ...] = ()
    scoring_cutoff: dt.datetime | None = None
    first_timed_day: dt.date | None = None  # the first day with a purchase line at a time of day, in all the data
    staging: str | None = None  # Spark: the folder tasks write their window outputs to; None = sent back inline


def range_outputs(con: duckdb.DuckDBPyConnection, work: PartitionWork, job: str) -> Iterator[tuple[str, str, pa.Table]]:
    """(kind, window key, table) of every output of the customers in ``work.tables`` (already on ``con``).

    ``job`` is :data:`NUMERIC_SUMS` (the vocabulary's numeric sums only) or ``"windows"`` (daily spend, then each
    window's features, labels, prospects and sequences).
    """
    tx, ev = work.tables["transactions"], work.tables.get("events")
    encode_tables(con, work.vocab, tx, ev)
    create_tokens(con, work.layout, list(work.token_cutoffs))
    if job == NUMERIC_SUMS:
        yield NUMERIC_SUMS, "", partial_numeric_sums(con, work.layout, "tokens", work.stats_before)
        return
    yield from _windows(con, work)


def _windows(con: duckdb.DuckDBPyConnection, work: PartitionWork) -> Iterator[tuple[str, str, pa.Table]]:
    tx = work.tables["transactions"]
    lists = build_token_lists(con, work.vocab, "tokens")
    drop_tables(con, "tokens", "enc_transactions", "enc_events")
    assert work.scoring_cutoff is not None
    daily = _global_hours(con, tx, build_daily(con, tx, work.scoring_cutoff), work.first_timed_day)
    spend = f"SELECT customer_id, day AS ts, net AS amount FROM {daily.daily} ORDER BY customer_id, day"
    yield DAILY_SPEND, "", fetch_arrow(con, spend)
    config, types = work.config, event_types(work.vocab)
    ev, cust = work.tables.get("events"), work.tables.get("customers")
    for spec in work.windows:
        window = spec.window
        features = build_features(
            con, tx, window, config.features, customers=cust, events=ev, event_types=types, daily=daily,
            text=config.text,
        )  # fmt: skip
        yield FEATURES, window.key, features
        if spec.labelled:
            yield LABELS, window.key, build_labels(con, tx, window)
        if ev is not None:
            prospects = prospects_table(
                con, window, tx, ev, cust, daily, types, features=config.features, text=config.text,
                labelled=spec.labelled,
            )  # fmt: skip
            yield PROSPECTS, window.key, prospects
        n_shards = max(1, math.ceil(spec.customers / config.sequence.shard_customers))
        by_shard = f"SELECT * FROM ({sequences_sql(work.vocab, lists, n_shards=n_shards)}) ORDER BY shard, customer_id"
        sequences = fetch_arrow(con, by_shard, {"cutoff": window.cutoff, "max_events": config.sequence.max_events})
        yield SEQUENCES, window.key, sequences


def _global_hours(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, daily: DailyTables, first_timed_day: dt.date | None
) -> DailyTables:
    """``daily`` whose hours table says, for every cutoff, whether any row of the whole data before it is timed.

    :func:`custseq.features.rfm.build_daily` keeps the hours table only when a row of *these* customers has a time
    of day, and the calendar group reads "timed" from that table's rows before each cutoff. Here the table is
    rebuilt when the range dropped it, and a row of no customer (NULL, joined to nobody) dated on the whole
    data's first timed day marks the cutoffs after it as timed.
    """
    if first_timed_day is None:
        return daily
    name = daily.hours or "daily_hours"
    if daily.hours is None:  # the same table as rfm._build_hours builds, for this range's rows
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT customer_id, CAST(ts AS DATE) AS day, hour(ts) AS hour, "
            "count(*) AS n, bool_or(CAST(ts AS TIME) <> TIME '00:00:00') AS timed "
            f"FROM {tx.sql_name} WHERE ts < $until AND NOT is_refund GROUP BY ALL",
            {"until": daily.until},
        )
    con.execute(f"INSERT INTO {name} VALUES (NULL, $day, 0, 1, true)", {"day": first_timed_day})
    return dataclasses.replace(daily, hours=name)


FIRST_TIMED_DAY_SQL = (
    "SELECT min(CAST(ts AS DATE)) FILTER (WHERE NOT is_refund AND ts <> CAST(CAST(ts AS DATE) AS TIMESTAMP)) FROM {tx}"
)


def write_outputs(parts: Iterable[tuple[str, str, pa.Table]], out: Path, specs: Sequence[PreparedWindowSpec]) -> None:
    """Append each range's tables to the files of the prepared folder's layout, in range (customer) order."""
    for spec in specs:
        folder = window_folder(out, spec.window.key)
        folder.folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder.sequences, ignore_errors=True)
        folder.sequences.mkdir()
        folder.labels.unlink(missing_ok=True)
        folder.prospects.unlink(missing_ok=True)
    writers: dict[Path, pq.ParquetWriter] = {}
    try:
        for kind, key, table in parts:
            if kind == DAILY_SPEND:
                _append(writers, out / DAILY_SPEND_FILE, table)
            elif kind == FEATURES:
                _append(writers, window_folder(out, key).features, table)
            elif kind == LABELS:
                _append(writers, window_folder(out, key).labels, table)
            elif kind == PROSPECTS:
                _append(writers, window_folder(out, key).prospects, table)
            elif kind == SEQUENCES:
                for shard, rows in _shard_runs(table):
                    _append(writers, window_folder(out, key).sequences / f"shard={shard}" / SHARD_FILE, rows)
    finally:
        for writer in writers.values():
            writer.close()


def _shard_runs(sequences: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """(shard, its rows without the shard column) for each run of one shard in ``sequences``, in order.

    The rows come ordered by shard then customer (one run per shard, zero-copy slices); in any other order the
    runs are shorter, and each shard's rows are still appended in their order.
    """
    shards = sequences.column("shard").to_numpy()
    rows = sequences.drop_columns(["shard"])
    starts = np.flatnonzero(np.diff(shards, prepend=np.nan))
    for start, end in itertools.pairwise([*starts.tolist(), len(shards)]):
        yield int(shards[start]), rows.slice(start, end - start)


def _append(writers: dict[Path, pq.ParquetWriter], path: Path, table: pa.Table) -> None:
    if path not in writers:
        path.parent.mkdir(parents=True, exist_ok=True)
        writers[path] = pq.ParquetWriter(path, table.schema)
    writers[path].write_table(table)


def finish_window(out: Path, spec: PreparedWindowSpec, config: RunConfig) -> PreparedWindow:
    """BG/NBD features on the written features, and the window's record (as the DuckDB engine's _write_window)."""
    window = spec.window
    folder = window_folder(out, window.key)
    features = pq.read_table(folder.features)
    btyd_fit = None
    if config.features.btyd:
        features, btyd_fit = add_btyd_features(features, window.horizon_days)
        pq.write_table(features, folder.features)
    churn_rate = total_value = None
    if spec.labelled:
        labels = pq.read_table(folder.labels)
        churned = pc.sum(labels.column("churned")).as_py() or 0
        churn_rate = round(churned / max(labels.num_rows, 1), 4)
        total_value = round(pc.sum(labels.column("value")).as_py() or 0.0, 2)
    return PreparedWindow(
        role=spec.role, as_of=window.key, cutoff=window.cutoff.isoformat(), label_end=window.end.isoformat(),
        customers=spec.customers, btyd_features=btyd_fit, churn_rate=churn_rate, total_value=total_value,
        labels=spec.labelled,
    )  # fmt: skip


# The DuckDB engine's driver: ranges of customer ids on one connection.


@dataclass(frozen=True)
class CustomerRange:
    """Customer ids ``low <= id < high``; None is unbounded."""

    low: str | None
    high: str | None

    def where(self) -> tuple[str, dict[str, str]]:
        """SQL condition on ``customer_id`` and its parameters."""
        conditions, params = ["true"], dict[str, str]()
        if self.low is not None:
            conditions.append("customer_id >= $low")
            params["low"] = self.low
        if self.high is not None:
            conditions.append("customer_id < $high")
            params["high"] = self.high
        return " AND ".join(conditions), params


def range_count(rows: int, engine: EngineConfig, memory_limit_bytes: int) -> int:
    """How many ranges of customers the DuckDB engine prepares ``rows`` clean rows in: ``[engine] range_rows``
    rows per range, else as many as :data:`RANGE_MEMORY_SHARE` of DuckDB's memory limit keeps (one range when
    they all fit: the tables of every customer at once, the fastest when memory allows)."""
    per_range = engine.range_rows or max(1, int(memory_limit_bytes * RANGE_MEMORY_SHARE / RANGE_BYTES_PER_ROW))
    return max(1, math.ceil(rows / per_range))


def customer_ranges(con: duckdb.DuckDBPyConnection, tx: CleanTable, n: int) -> list[CustomerRange]:
    """``n`` ranges of ids holding about as many of ``tx``'s rows each (fewer when ids repeat at the bounds);
    together they hold every id, also the ids of other tables' rows (events of people without a purchase)."""
    if n <= 1:
        return [CustomerRange(None, None)]
    quantiles = [i / n for i in range(1, n)]
    found = fetch_scalar(con, f"SELECT quantile_disc(customer_id, $q) FROM {tx.sql_name}", {"q": quantiles})
    bounds = sorted({str(b) for b in found or ()})
    edges: list[str | None] = [None, *bounds, None]
    return [CustomerRange(lo, hi) for lo, hi in itertools.pairwise(edges)]


def window_specs(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, plan: WindowPlan, roles: Sequence[tuple[str, Window]]
) -> tuple[PreparedWindowSpec, ...]:
    """Each window's record, with its customers (those with a transaction before its cutoff) in all the data."""
    # one aggregate per customer, not a distinct count per window: whoever has a row before a cutoff is counted
    counts = ", ".join(f"count(*) FILTER (WHERE first_ts < $c{i})" for i in range(len(roles)))
    cutoffs = {f"c{i}": window.cutoff for i, (_, window) in enumerate(roles)}
    sql = f"SELECT {counts} FROM (SELECT min(ts) AS first_ts FROM {tx.sql_name} GROUP BY customer_id)"
    customers = fetch_row(con, sql, cutoffs)
    return tuple(
        PreparedWindowSpec(role, window, role != "score" or plan.scoring_labels_observed, int(n))
        for (role, window), n in zip(roles, customers, strict=True)
    )


def first_timed_day(con: duckdb.DuckDBPyConnection, tx: CleanTable, scoring_cutoff: dt.datetime) -> dt.date | None:
    """The first day with a purchase at a time of day, when it is before the scoring cutoff (else None)."""
    day = fetch_scalar(con, FIRST_TIMED_DAY_SQL.format(tx=tx.sql_name))
    return day if day is not None and day < scoring_cutoff.date() else None


def outputs_by_range(
    con: duckdb.DuckDBPyConnection, work: PartitionWork, ranges: Sequence[CustomerRange], job: str
) -> Iterator[tuple[str, str, pa.Table]]:
    """:func:`range_outputs` of each range in turn, on ``con``: the range's rows of ``work.tables`` are copied to
    tables of their own, and every table made for the range is dropped before the next one's."""
    for customers in ranges:
        where, params = customers.where()
        tables = {}
        for name, clean in work.tables.items():
            own = f"{RANGE_TABLE_PREFIX}{name}"
            con.execute(f"CREATE OR REPLACE TEMP TABLE {own} AS SELECT * FROM {clean.sql_name} WHERE {where}", params)
            tables[name] = dataclasses.replace(clean, sql_name=own)
        before = set(_temp_tables(con))
        try:
            yield from range_outputs(con, dataclasses.replace(work, tables=tables), job)
        finally:
            drop_tables(con, *(set(_temp_tables(con)) - before), *(t.sql_name for t in tables.values()))


def _temp_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()]
