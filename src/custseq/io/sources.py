"""Data sources: files (CSV, CSV.gz, Parquet), DuckDB tables and in-memory frames, read into DuckDB.

Text files are read with every column as text, so that one bad value cannot fail the whole read:
parsing happens row by row in :mod:`custseq.validate`, where a bad value sends its row to quarantine.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from custseq.errors import DataReadError, EmptyTableError, SchemaError
from custseq.io.csv_records import (
    BLANK_LINE,
    ENCODING_ERROR,
    FIELD_COUNT_ERRORS,
    UNREADABLE_LINE,
    WRONG_FIELD_COUNT,
    CsvDialect,
    count_records,
    open_bytes,
    read_header,
)
from custseq.io.engine import drop_tables, fetch_row, fetch_scalar
from custseq.schema import quote_ident

RAW_ROW = "__row"  # 1-based input position added to every raw table

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")
DUCKDB_ALIAS = "__custseq_src"
# Every choice that can drop a line is made here, not sniffed: a trailing "# exported by ERP" line once made the
# sniffer take '#' for a comment marker and drop every row whose id starts with '#'. Lines DuckDB cannot read
# are skipped and recorded (ignore_errors), then accounted for row by row (see _load_csv_file).
CSV_OPTIONS = "all_varchar = true, header = true, comment = '', skip = 0, ignore_errors = true"
CSV_REJECTS = "__custseq_csv_rejects"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's begin with these too
CSV_REJECT_SCANS = "__custseq_csv_reject_scans"


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

    A CSV file read whole is accounted for line by line against an independent count: a blank or unreadable
    line becomes an empty row at its place, listed in table :func:`bad_lines_table` with its rule, so that
    validation quarantines it and rows in is the file's record count.

    Raises
    ------
    DataReadError
        If the source cannot be read, is not UTF-8 text, or its lines cannot all be accounted for.
    EmptyTableError
        If it has no rows.
    SchemaError
        If a user column is named like custseq's internal row column.
    """
    refuse_other_encodings(source)
    refuse_repeated_header_names(con, source)
    select = _select_source(con, source)
    limit = f" LIMIT {int(rows)}" if rows else ""
    try:
        source_columns = [r[0] for r in con.execute(f"DESCRIBE {select.sql}", select.params).fetchall()]
        if RAW_ROW in source_columns or len(source_columns) != len(set(source_columns)):
            raise SchemaError(f"{source.label} has duplicated column names or a column named {RAW_ROW}; rename them")
        drop_tables(con, quote_ident(bad_lines_table(name)))
        if source.fmt == "csv" and not rows:
            _load_csv(con, source.paths, name)
        else:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS "
                f"SELECT row_number() OVER () AS {RAW_ROW}, * FROM ({select.sql}{limit})",
                select.params,
            )
    except duckdb.Error as e:
        if mixed := next((p for p in source.paths if source.fmt == "csv" and _mixed_line_endings(p)), None):
            raise DataReadError(
                f"cannot read {mixed}: its lines end in both LF and CRLF (mixed line endings), so its layout cannot "
                "be told; save it again with one kind of line ending (e.g. dos2unix) and run again"
            ) from None
        raise DataReadError(read_problem(source, e)) from None
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


def refuse_other_encodings(source: Source) -> None:
    """Refuse a CSV file written in UTF-16 or UTF-32 (a byte-order mark, or NUL bytes between the characters).

    DuckDB would read it as UTF-8 with NUL characters in every name, and the error would be a missing column.

    Raises
    ------
    DataReadError
        Naming the file and the encoding problem.
    """
    if source.fmt != "csv":
        return
    for path in source.paths:
        try:
            with open_bytes(path) as f:
                start = f.read(4096)
        except (OSError, EOFError):
            continue  # the reader itself reports what is wrong with the file
        wide = start.startswith(UTF16_BOMS) or start[:200].count(b"\x00") > len(start[:200]) // 4
        if start and wide:
            raise DataReadError(
                f"{path} is UTF-16 or UTF-32 text, not UTF-8 (an encoding problem); save the file as UTF-8 "
                "and run again"
            )


def read_problem(source: Source, e: duckdb.Error) -> str:
    """What went wrong reading ``source``, in the user's words rather than DuckDB's."""
    text = str(e)
    if "Error when sniffing file" in text:
        return (
            f"cannot read {source.label} as CSV: no delimiter and columns could be found in it; it may be binary "
            "data, a spreadsheet or compressed — save it as a UTF-8 CSV file with a header line"
        )
    size = re.search(r"Maximum line size of (\d+) bytes exceeded", text)
    if size:
        return (
            f"cannot read {source.label}: a line is longer than {int(size.group(1)):,} bytes (a quote left open, "
            "or a huge field); check the file, or export it again"
        )
    if source.fmt == "parquet" and ("magic bytes" in text or "too small to be a Parquet file" in text):
        return f"{source.label} is not a Parquet file, or it is cut short; export it again"
    return f"cannot read {source.label}: {_first_line(e).split(' Error: ', 1)[-1]}"


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
        return read_header(path, sniff_dialect(con, path))
    except (OSError, csv.Error, EOFError):
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
        return _Select(f"SELECT * FROM read_csv(?, {CSV_OPTIONS}, union_by_name = true)", [files])
    if source.fmt == "parquet":
        return _Select("SELECT * FROM read_parquet(?, union_by_name = true)", [files])
    return _Select(_duckdb_table_sql(con, source), [], attached=DUCKDB_ALIAS)


def _mixed_line_endings(path: Path, sample: int = 1 << 20) -> bool:
    """Whether the first MiB of a CSV file ends lines both with CRLF and with a bare LF."""
    try:
        with open_bytes(path) as f:
            head = f.read(sample)
    except (OSError, EOFError):
        return False
    crlf = head.count(b"\r\n")
    return 0 < crlf < head.count(b"\n")


def bad_lines_table(raw: str) -> str:
    """The table listing raw table ``raw``'s lines that could not be read: ``__row``, ``rule``, ``detail``.

    It exists only while there are such lines.
    """
    return f"{raw}__bad_lines"


def _load_csv(con: duckdb.DuckDBPyConnection, paths: tuple[Path, ...], name: str) -> None:
    """Read CSV files, in order, into table ``name``; a line that is not a row is an empty row at its place."""
    parts: list[str] = []
    bad: list[tuple[int, str, str]] = []
    offset = 0
    try:
        for i, path in enumerate(paths):
            parts.append(f"{name}__part{i}")
            records, lines = _load_csv_file(con, path, parts[-1], offset)
            bad += lines
            offset += records
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {quote_ident(p)}" for p in parts)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS {union} ORDER BY {RAW_ROW}")
    finally:
        drop_tables(con, *(quote_ident(p) for p in parts), CSV_REJECTS, CSV_REJECT_SCANS)
    if bad:
        table = quote_ident(bad_lines_table(name))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({RAW_ROW} BIGINT, rule VARCHAR, detail VARCHAR)")
        con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", bad)


def _load_csv_file(
    con: duckdb.DuckDBPyConnection, path: Path, part: str, offset: int
) -> tuple[int, list[tuple[int, str, str]]]:
    """Read one CSV file into ``part`` with ``__row`` = ``offset`` + its record number (after the header line).

    Returns the file's record count and its bad lines as (``__row``, rule, detail).
    """
    read = quote_ident(f"{part}__read")
    drop_tables(con, CSV_REJECTS, CSV_REJECT_SCANS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {read} AS SELECT row_number() OVER () AS __custseq_k, * FROM read_csv(?, "
        f"{CSV_OPTIONS}, store_rejects = true, rejects_table = '{CSV_REJECTS}', rejects_scan = '{CSV_REJECT_SCANS}')",
        [str(path)],
    )
    try:
        bad = _rejected_lines(con, path)
        dialect = sniff_dialect(con, path)
        try:
            records = count_records(path, dialect)
        except (csv.Error, OSError, EOFError) as e:
            raise DataReadError(f"cannot count the lines of {path}: {_first_line(e)}") from None
        single_column = len(con.table(read).columns) == 2  # there, a blank line is a row with an empty value
        for row in () if single_column else records.blank:
            bad.setdefault(row, (BLANK_LINE, "blank line"))
        n_read = fetch_scalar(con, f"SELECT count(*) FROM {read}")
        if n_read + len(bad) != records.count or not all(1 <= r <= records.count for r in bad):
            raise DataReadError(
                f"cannot account for every line of {path}: it holds {records.count:,} records after the header "
                f"line, of which {n_read:,} were read and {len(bad):,} could not be; a quote may be left open — "
                "check the file, or export it again"
            )
        _number_rows(con, read, quote_ident(part), offset, records.count, sorted(bad))
    finally:
        drop_tables(con, read)
    return records.count, [(offset + row, rule, detail) for row, (rule, detail) in sorted(bad.items())]


def sniff_dialect(con: duckdb.DuckDBPyConnection, path: Path) -> CsvDialect:
    """The delimiter and quotes DuckDB reads ``path`` with (the defaults for a file it cannot sniff, e.g. empty)."""
    try:
        row = fetch_row(con, f"SELECT Delimiter, Quote, Escape FROM sniff_csv(?, {CSV_OPTIONS})", [str(path)])
    except duckdb.Error:
        return CsvDialect()
    return CsvDialect.of_scan(*row)


def _rejected_lines(con: duckdb.DuckDBPyConnection, path: Path) -> dict[int, tuple[str, str]]:
    """The record numbers of the lines DuckDB could not read, with a rule and DuckDB's own words.

    Raises
    ------
    DataReadError
        If a line is not UTF-8 text: an encoding problem is the file's, not one line's.
    """
    rejected = con.execute(
        f"SELECT line, arg_min(error_type::VARCHAR, column_idx), arg_min(error_message, column_idx) "
        f"FROM {CSV_REJECTS} GROUP BY line ORDER BY line"
    ).fetchall()
    bad = {}
    for line, error, message in rejected:
        if error == ENCODING_ERROR:
            raise DataReadError(
                f"{path} line {line} is not UTF-8 text (an encoding problem); save the file as UTF-8 and run again"
            )
        rule = WRONG_FIELD_COUNT if error in FIELD_COUNT_ERRORS else UNREADABLE_LINE
        bad[int(line) - 1] = (rule, str(message).strip().splitlines()[0])  # line 1 is the header
    return bad


def _number_rows(
    con: duckdb.DuckDBPyConnection, read: str, part: str, offset: int, records: int, bad: list[int]
) -> None:
    """Give the rows read their record numbers, skipping the bad lines, and add an empty row for each of those."""
    if not bad:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {part} AS "
            f"SELECT __custseq_k + $offset AS {RAW_ROW}, * EXCLUDE (__custseq_k) FROM {read}",
            {"offset": offset},
        )
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {part} AS WITH good AS ("
        f"SELECT i, row_number() OVER (ORDER BY i) AS __custseq_k FROM range(1, $records + 1) t(i) "
        f"WHERE NOT list_contains($bad, i)) "
        f"SELECT good.i + $offset AS {RAW_ROW}, r.* EXCLUDE (__custseq_k) FROM {read} r "
        f"JOIN good USING (__custseq_k)",
        {"offset": offset, "records": records, "bad": bad},
    )
    con.execute(f"INSERT INTO {part} ({RAW_ROW}) SELECT unnest($rows)", {"rows": [offset + r for r in bad]})


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
