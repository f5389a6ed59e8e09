"""Data sources: files (CSV, CSV.gz, Parquet), DuckDB tables and in-memory frames, read into DuckDB.

Text files are read with every column as text, so that one bad value cannot fail the whole read:
parsing happens row by row in :mod:`custseq.validate`, where a bad value sends its row to quarantine.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from custseq.errors import DataReadError, EmptyTableError, SchemaError
from custseq.io.engine import fetch_scalar
from custseq.schema import quote_ident

RAW_ROW = "__row"  # 1-based input position added to every raw table

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")
DUCKDB_ALIAS = "__custseq_src"


@dataclass(frozen=True)
class Source:
    """Where one table comes from: file paths of one format, a DuckDB table, or an in-memory frame."""

    label: str
    paths: tuple[Path, ...] = ()
    fmt: str = ""  # "csv", "parquet" or "duckdb"
    duckdb_table: str | None = None
    frame: Any = None

    @classmethod
    def of(cls, data: Any, table: str = "transactions") -> Source:
        """Interpret what a user passed: a path, ``db.duckdb:table``, a list of paths, or a frame.

        Raises
        ------
        DataReadError
            If a file does not exist or its format is not recognised.
        """
        if isinstance(data, Source):
            return data
        if _is_frame(data):
            return cls(label=f"{table} ({type(data).__module__.split('.')[0]} frame)", frame=data)
        items = list(data) if isinstance(data, list | tuple) else [data]
        if not items:
            raise DataReadError(f"no {table} data given; pass a CSV, Parquet or DuckDB file")
        sources = [_file_source(item, table) for item in items]
        fmts = {s.fmt for s in sources}
        if len(fmts) > 1 or ("duckdb" in fmts and len(sources) > 1):
            raise DataReadError(
                f"{table}: mixed sources {[s.label for s in sources]}; pass files of one format "
                "(several CSV or several Parquet files), or a single DuckDB table"
            )
        if len(sources) == 1:
            return sources[0]
        paths = tuple(p for s in sources for p in s.paths)
        return cls(label=", ".join(str(p) for p in paths), paths=paths, fmt=sources[0].fmt)


def _is_frame(data: Any) -> bool:
    module = type(data).__module__.split(".")[0]
    return isinstance(data, pa.Table | pa.RecordBatch) or module in ("pandas", "polars")


def _file_source(item: Any, table: str) -> Source:
    text = str(item)
    db_table = None
    lower = text.lower()
    for suffix in DUCKDB_SUFFIXES:
        marker = suffix + ":"
        if marker in lower:
            cut = lower.index(marker) + len(suffix)
            text, db_table = text[:cut], text[cut + 1 :]
            break
    path = Path(text)
    if not path.exists():
        raise DataReadError(f"{table} file {path} does not exist; check the path")
    if path.is_dir():
        raise DataReadError(f"{table} path {path} is a folder; pass the files inside it (e.g. {path}/*.parquet)")
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return Source(label=str(path), paths=(path,), fmt="csv")
    if name.endswith(PARQUET_SUFFIXES):
        return Source(label=str(path), paths=(path,), fmt="parquet")
    if name.endswith(DUCKDB_SUFFIXES):
        return Source(label=f"{path}:{db_table or '?'}", paths=(path,), fmt="duckdb", duckdb_table=db_table)
    raise DataReadError(
        f"{table} file {path} has an unrecognised format; use .csv, .csv.gz, .parquet, or a DuckDB file "
        "as path.duckdb:table"
    )


def load_raw(con: duckdb.DuckDBPyConnection, source: Source, name: str, *, rows: int | None = None) -> list[str]:
    """Materialise a source as table ``name`` with a 1-based ``__row`` column; return its user columns.

    ``rows`` reads only the first rows (a sample, for a look at the columns); None reads them all.

    Raises
    ------
    DataReadError
        If the source cannot be read.
    EmptyTableError
        If it has no rows.
    SchemaError
        If a user column is named like custseq's internal row column.
    """
    refuse_repeated_header_names(con, source)
    select = _select_source(con, source)
    limit = f" LIMIT {int(rows)}" if rows else ""
    try:
        source_columns = [r[0] for r in con.execute(f"DESCRIBE {select.sql}", select.params).fetchall()]
        if RAW_ROW in source_columns or len(source_columns) != len(set(source_columns)):
            raise SchemaError(f"{source.label} has duplicated column names or a column named {RAW_ROW}; rename them")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS "
            f"SELECT row_number() OVER () AS {RAW_ROW}, * FROM ({select.sql}{limit})",
            select.params,
        )
    except duckdb.Error as e:
        raise DataReadError(f"cannot read {source.label}: {_first_line(e)}") from None
    finally:
        if select.view:
            con.unregister(select.view)
        if select.attached:
            con.execute(f"DETACH {select.attached}")
    columns = [c for c in con.table(name).columns if c != RAW_ROW]
    n = fetch_scalar(con, f"SELECT count(*) FROM {quote_ident(name)}")
    if n == 0:
        raise EmptyTableError(f"{source.label} has no rows; custseq needs at least one row in every table it is given")
    if source.fmt == "csv" and len(columns) == 1 and any(ch in columns[0] for ch in " \t;|"):
        raise SchemaError(
            f"{source.label} was read as a single column {columns[0]!r}; custseq reads comma-, tab-, "
            "semicolon- or pipe-delimited files with a header line — convert whitespace-aligned files first"
        )
    return columns


def refuse_repeated_header_names(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Refuse a CSV file whose header names a column twice (case aside, as DuckDB compares names).

    DuckDB's reader renames the second ``amount`` to ``amount_1``, which would then become a column of its own, so
    the header line is read here as written.

    Raises
    ------
    SchemaError
        Naming the file and the repeated names.
    """
    if source.fmt != "csv":
        return
    for path in source.paths:
        names = [n.strip().casefold() for n in _header_names(con, path)]
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            raise SchemaError(
                f"{path} names the column(s) {repeated} more than once in its header; rename them so that every "
                "column has its own name"
            )


def _header_names(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        delimiter, quote = con.execute("SELECT Delimiter, Quote FROM sniff_csv(?)", [str(path)]).fetchone() or ("", "")
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter or ",", quotechar=quote if len(quote) == 1 else '"')
            return next(reader, [])
    except (duckdb.Error, OSError, csv.Error, EOFError):
        return []  # the reader itself reports what is wrong with the file


@dataclass(frozen=True)
class _Select:
    sql: str
    params: list[Any]
    view: str | None = None
    attached: str | None = None


def _select_source(con: duckdb.DuckDBPyConnection, source: Source) -> _Select:
    if source.frame is not None:
        view = "__custseq_frame"
        con.register(view, _to_arrow(source.frame))
        return _Select(f"SELECT * FROM {view}", [], view)
    files = [str(p) for p in source.paths]
    if source.fmt == "csv":
        return _Select("SELECT * FROM read_csv(?, all_varchar = true, header = true, union_by_name = true)", [files])
    if source.fmt == "parquet":
        return _Select("SELECT * FROM read_parquet(?, union_by_name = true)", [files])
    return _Select(_duckdb_table_sql(con, source), [], attached=DUCKDB_ALIAS)


def _duckdb_table_sql(con: duckdb.DuckDBPyConnection, source: Source) -> str:
    path = source.paths[0]
    try:
        con.execute(f"ATTACH ? AS {DUCKDB_ALIAS} (READ_ONLY)", [str(path)])
    except duckdb.Error as e:
        raise DataReadError(f"cannot open DuckDB file {path}: {_first_line(e)}") from None
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? ORDER BY 1",
            [DUCKDB_ALIAS],
        ).fetchall()
    ]
    table = source.duckdb_table
    if table is None and len(tables) == 1:
        table = tables[0]
    if table is None or table not in tables:
        con.execute(f"DETACH {DUCKDB_ALIAS}")
        hint = f"name one as {path}:<table>" if table is None else f"there is no table {table!r}"
        raise DataReadError(f"{path} holds tables {tables}; {hint}")
    return f"SELECT * FROM {DUCKDB_ALIAS}.{quote_ident(table)}"


def _to_arrow(frame: Any) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if type(frame).__module__.startswith("polars"):
        return frame.to_arrow()
    return pa.Table.from_pandas(frame, preserve_index=False)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
