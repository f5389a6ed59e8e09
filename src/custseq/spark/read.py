"""The user's tables as Spark DataFrames: CSV and Parquet files, catalog tables (``table:NAME``) and frames.

Every table gets the 1-based input position ``__row`` that the DuckDB readers give it (files in the order given,
rows in file order), so that row ids, duplicate detection and quarantine row numbers agree between the engines.
Text files are read with every column as text; parsing happens in :mod:`custseq.spark.stage`.

Not as in the DuckDB readers: blank lines are skipped by Spark's CSV reader (DuckDB quarantines them as
``blank_line``), and a line with a wrong number of fields is padded or cut rather than quarantined.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from custseq.errors import DataReadError, EmptyTableError, SchemaError
from custseq.io.sources import CSV_OPTIONS, RAW_ROW, Source
from custseq.io.tables import Tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TABLE_PREFIX = "table:"
SPARK_TABLE = "spark-table"


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


def read_raw(spark: SparkSession, source: Source) -> tuple[DataFrame, int]:
    """The source as a DataFrame with ``__row`` first, then the user's columns; and its number of rows.

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
            parts = [_frame(spark, source.frame)]
        elif source.fmt == SPARK_TABLE:
            parts = [spark.table(str(source.duckdb_table))]
        elif source.fmt == "csv":
            parts = [_csv(spark, path) for path in source.paths]
        elif source.fmt == "parquet":
            parts = [spark.read.parquet(str(path)) for path in source.paths]
        else:
            raise DataReadError(f"the Spark engine reads CSV, Parquet and table:NAME, not {source.label}")
        frame, n = _numbered(parts)
    except PySparkException as e:
        raise DataReadError(f"cannot read {source.label}: {str(e).splitlines()[0]}") from None
    columns = [c for c in frame.columns if c != RAW_ROW]
    if RAW_ROW in parts[0].columns or len({c.lower() for c in columns}) != len(columns):
        raise SchemaError(f"{source.label} has duplicated column names or a column named {RAW_ROW}; rename them")
    if n == 0:
        raise EmptyTableError(f"{source.label} has no rows; custseq needs at least one row in every table it is given")
    return frame, n


def _frame(spark: SparkSession, frame: Any) -> DataFrame:
    if isinstance(frame, pa.RecordBatch):
        table = pa.Table.from_batches([frame])
    elif type(frame).__module__.split(".")[0] == "pandas":
        table = pa.Table.from_pandas(frame, preserve_index=False)  # as DuckDB reads a frame: without its index
    else:
        table = frame if isinstance(frame, pa.Table) else pa.table(frame)
    return spark.createDataFrame(table)


def _csv(spark: SparkSession, path: Path) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    delimiter, quote, escape, names = _dialect(path)
    schema = StructType([StructField(n, StringType()) for n in names]) if names else None  # known: no header job
    return spark.read.csv(
        str(path), schema=schema, header=True, inferSchema=False, sep=delimiter, quote=quote, escape=escape,
        multiLine=True, mode="PERMISSIVE", encoding="UTF-8",
    )  # fmt: skip


def _dialect(path: Path) -> tuple[str, str, str, list[str]]:
    """DuckDB's sniffed delimiter, quote and escape of a local file (RFC 4180 defaults when it cannot be read), and
    its column names (none: Spark reads the header)."""
    try:
        with duckdb.connect() as con:
            row = con.execute(
                "SELECT Delimiter, Quote, Escape FROM sniff_csv(?, all_varchar = true, header = true)", [str(path)]
            ).fetchone()
            names = [
                r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {CSV_OPTIONS})", [str(path)]).fetchall()
            ]
    except duckdb.Error:
        row, names = None, []
    delimiter, quote, escape = (c if c and len(c) == 1 and c != "\0" else None for c in (row or (None,) * 3))
    quote = quote or '"'
    return delimiter or ",", quote, escape or quote, names


def _numbered(parts: list[DataFrame]) -> tuple[DataFrame, int]:
    """The parts, in order, with ``__row`` = 1-based position over all of them (computed in the JVM); and the
    number of rows."""
    from pyspark.sql import functions as F

    numbered, offset = [], 0
    for part in parts:
        tagged = part.select(
            F.spark_partition_id().alias("__pid"), F.monotonically_increasing_id().alias("__mono"), "*"
        ).cache()
        counts: dict[int, int] = {pid: n for pid, n in tagged.groupBy("__pid").count().collect()}
        starts, total = {}, offset
        for pid in sorted(counts):
            starts[pid], total = total, total + counts[pid]
        start = F.create_map(*[x for pid, s in starts.items() for x in (F.lit(pid), F.lit(s))]) if starts else None
        position = F.col("__mono") - F.shiftleft(F.col("__pid").cast("long"), 33)
        row = (start[F.col("__pid")] if start is not None else F.lit(0)) + position + 1
        numbered.append(tagged.select(row.cast("long").alias(RAW_ROW), *[tagged[c] for c in part.columns]))
        offset = total
    frame = numbered[0]
    for other in numbered[1:]:
        frame = frame.unionByName(other, allowMissingColumns=True)
    return frame, offset
