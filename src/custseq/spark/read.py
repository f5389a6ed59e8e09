"""The user's tables as Spark DataFrames: CSV and Parquet files, catalog tables (``table:NAME``) and frames.

Every table gets the 1-based input position ``__row`` that the DuckDB readers give it (files in the order given,
rows in file order), so that row ids, duplicate detection and quarantine row numbers agree between the engines.
Text files are read with every column as text; parsing happens in :mod:`custseq.spark.stage`.

A CSV line that is not a row becomes an empty row at its place, listed with its rule in the table of bad lines,
as in the DuckDB readers: a line with more or fewer fields than the header (Spark's corrupt-record column) is
``wrong_field_count``, and a blank line (which Spark's reader skips; found by the same count of records the
DuckDB engine makes, :func:`custseq.io.csv_records.count_records`, on a file the driver can read) is
``blank_line``. Not as in DuckDB: a stray quote that DuckDB cannot read (``unreadable_line``) is split by
Spark's more lenient reader, usually into a line with a wrong number of fields.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd  # at module level: Spark reads the pandas UDF's type hints from this module's names
import pyarrow as pa

from custseq.errors import DataReadError, EmptyTableError, SchemaError
from custseq.io.csv_records import BLANK_LINE, WRONG_FIELD_COUNT, CsvDialect, count_records
from custseq.io.sources import CSV_OPTIONS, RAW_ROW, Source, sniff_dialect
from custseq.io.tables import Tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TABLE_PREFIX = "table:"
SPARK_TABLE = "spark-table"
CORRUPT_LINE = "__custseq_corrupt_line"  # Spark's corrupt-record column: the text of a line with too many/few fields


@dataclass(frozen=True)
class RawTable:
    """A source as read: ``__row`` then the user's columns; its number of rows; and its lines that are not rows
    (``__row``, ``rule``, ``detail``; None when there are none to look for), each an empty row of ``frame``."""

    frame: DataFrame
    rows: int
    bad_lines: DataFrame | None = None


@dataclass(frozen=True)
class _Part:
    """One file or frame before numbering; ``blank``: the record numbers of a CSV file's blank lines."""

    frame: DataFrame
    blank: tuple[int, ...] = ()


def spark_tables(transactions: Any, *, customers: Any = None, events: Any = None, columns: Any = None) -> Tables:
    """:meth:`Tables.of`, where ``table:NAME`` names a table of the SparkSession's catalog."""

    def source(data: Any, table: str) -> Source | None:
        if data is None:
            return None
        if isinstance(data, str) and data.startswith(TABLE_PREFIX):
            name = data[len(TABLE_PREFIX) :].strip()
            if not name:
                raise DataReadError(f"{table}: {data!r} names no table; write table:NAME (e.g. table:sales.orders)")
            return Source(label=data, fmt=SPARK_TABLE, duckdb_table=name)
        return Source.of(data, table)

    tx = source(transactions, "transactions")
    assert tx is not None
    return Tables(tx, source(customers, "customers"), source(events, "events"), columns)


def read_raw(spark: SparkSession, source: Source) -> RawTable:
    """The source as a DataFrame with ``__row`` first, then the user's columns; its rows; and its bad lines.

    Raises
    ------
    DataReadError
        If the source cannot be read.
    EmptyTableError
        If it has no rows.
    SchemaError
        If a user column is named like custseq's internal row column.
    """
    from pyspark.errors import PySparkException

    try:
        if source.frame is not None:
            parts = [_Part(_frame(spark, source.frame))]
        elif source.fmt == SPARK_TABLE:
            parts = [_Part(spark.table(str(source.duckdb_table)))]
        elif source.fmt == "csv":
            parts = [_csv(spark, path) for path in source.paths]
        elif source.fmt == "parquet":
            parts = [_Part(spark.read.parquet(str(path))) for path in source.paths]
        else:
            raise DataReadError(f"the Spark engine reads CSV, Parquet and table:NAME, not {source.label}")
        frame, n, blank_rows = _numbered(spark, parts)
        frame, bad_lines = _bad_lines(spark, frame, blank_rows)
    except PySparkException as e:
        raise DataReadError(f"cannot read {source.label}: {str(e).splitlines()[0]}") from None
    columns = [c for c in frame.columns if c != RAW_ROW]
    if RAW_ROW in parts[0].frame.columns or len({c.lower() for c in columns}) != len(columns):
        raise SchemaError(f"{source.label} has duplicated column names or a column named {RAW_ROW}; rename them")
    if n == 0:
        raise EmptyTableError(f"{source.label} has no rows; custseq needs at least one row in every table it is given")
    return RawTable(frame, n, bad_lines)


def _frame(spark: SparkSession, frame: Any) -> DataFrame:
    if isinstance(frame, pa.RecordBatch):
        table = pa.Table.from_batches([frame])
    elif type(frame).__module__.split(".")[0] == "pandas":
        table = pa.Table.from_pandas(frame, preserve_index=False)  # as DuckDB reads a frame: without its index
    else:
        table = frame if isinstance(frame, pa.Table) else pa.table(frame)
    return spark.createDataFrame(table)


def _csv(spark: SparkSession, path: Path) -> _Part:
    from pyspark.sql.types import StringType, StructField, StructType

    dialect, names = _dialect(path)
    blank: tuple[int, ...] = ()
    if not names:  # the driver cannot read the file: Spark reads the header, and ragged lines are padded or cut
        schema = None
    else:
        schema = StructType([StructField(n, StringType()) for n in [*names, CORRUPT_LINE]])
        blank = _blank_lines(path, dialect)
    escape = dialect.escape or dialect.quote  # "": no quoting (Spark's escape would default to a backslash)
    frame = spark.read.csv(
        str(path), schema=schema, header=True, inferSchema=False, sep=dialect.delimiter, quote=dialect.quote,
        escape=escape, multiLine=True, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT_LINE, encoding="UTF-8",
    )  # fmt: skip
    return _Part(frame, blank)


def _blank_lines(path: Path, dialect: CsvDialect) -> tuple[int, ...]:
    try:
        return count_records(path, dialect).blank
    except (csv.Error, OSError, EOFError) as e:
        raise DataReadError(f"cannot count the lines of {path}: {str(e).splitlines()[0]}") from None


def _dialect(path: Path) -> tuple[CsvDialect, list[str]]:
    """The dialect the DuckDB engine reads a local file with (:func:`custseq.io.sources.sniff_dialect`), and its
    column names (none when DuckDB cannot read it: Spark reads the header)."""
    with duckdb.connect() as con:
        dialect = sniff_dialect(con, path)
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {CSV_OPTIONS})", [str(path)]).fetchall()
        except duckdb.Error:
            described = []
    return dialect, [r[0] for r in described]


def _numbered(spark: SparkSession, parts: list[_Part]) -> tuple[DataFrame, int, list[int]]:
    """The parts, in order, with ``__row`` = 1-based position over all of them (computed in the JVM), a CSV
    file's blank lines counted (each an empty row at its place); the number of rows; the blank lines' rows."""
    from pyspark.sql import functions as F

    numbered, offset, blank_rows = [], 0, []
    for part in parts:
        tagged = part.frame.select(
            F.spark_partition_id().alias("__pid"), F.monotonically_increasing_id().alias("__mono"), "*"
        ).cache()
        counts: dict[int, int] = {pid: n for pid, n in tagged.groupBy("__pid").count().collect()}
        starts, total = {}, 0
        for pid in sorted(counts):
            starts[pid], total = total, total + counts[pid]
        start = F.create_map(*[x for pid, s in starts.items() for x in (F.lit(pid), F.lit(s))]) if starts else None
        position = F.col("__mono") - F.shiftleft(F.col("__pid").cast("long"), 33)
        record = _past_blank_lines((start[F.col("__pid")] if start is not None else F.lit(0)) + position + 1, part)
        columns = [tagged[c] for c in part.frame.columns]
        numbered.append(tagged.select((record + offset).cast("long").alias(RAW_ROW), *columns))
        if part.blank:
            rows = [offset + b for b in part.blank]
            numbered.append(spark.createDataFrame([(r,) for r in rows], f"{RAW_ROW} long"))
            blank_rows += rows
        offset += total + len(part.blank)
    frame = numbered[0]
    for other in numbered[1:]:
        frame = frame.unionByName(other, allowMissingColumns=True)
    return frame, offset, blank_rows


def _past_blank_lines(position: Column, part: _Part) -> Column:
    """The record number of the row at 1-based ``position`` among the part's rows: the position plus the blank
    lines before it. Blank line i (1-based, at record b_i) has b_i - i rows before it, so it comes before the row
    at position p when b_i - i < p."""
    if not part.blank:
        return position
    from pyspark.sql.functions import pandas_udf

    before = np.array(part.blank, dtype=np.int64) - np.arange(1, len(part.blank) + 1)

    @pandas_udf("long")  # type: ignore[call-overload]
    def record(p: pd.Series) -> pd.Series:
        return p + np.searchsorted(before, p.to_numpy(np.int64), side="left")

    return record(position)


def _bad_lines(spark: SparkSession, frame: DataFrame, blank_rows: list[int]) -> tuple[DataFrame, DataFrame | None]:
    """The frame with its lines that are not rows emptied, and those lines' rules: the corrupt-record column's
    lines, and the blank lines at ``blank_rows`` (None when nothing was read with that column)."""
    from pyspark.sql import functions as F

    if CORRUPT_LINE not in frame.columns:
        return frame, None
    bad = F.col(CORRUPT_LINE).isNotNull()
    ragged = frame.where(bad).select(RAW_ROW, F.lit(WRONG_FIELD_COUNT).alias("rule"), F.lit("").alias("detail"))
    schema = f"{RAW_ROW} long, rule string, detail string"
    blank = spark.createDataFrame([(r, BLANK_LINE, "") for r in blank_rows], schema)
    user = [c for c in frame.columns if c not in (RAW_ROW, CORRUPT_LINE)]
    emptied = frame.select(RAW_ROW, *[F.when(bad, F.lit(None)).otherwise(F.col(c)).alias(c) for c in user])
    return emptied, ragged.unionByName(blank).cache()
