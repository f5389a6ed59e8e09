"""Sources: every supported input form gives the same clean rows; unreadable inputs fail with named errors."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import custseq
from custseq.errors import DataReadError, EmptyTableError, SchemaError
from custseq.io.engine import connect
from custseq.io.sources import Source, load_raw
from custseq.validate.tables import validate_tables

CSV_TEXT = (
    "customer_id,ts,amount\n007,2011-01-01 10:00:00,1.5\n008,2011-01-02 00:00:00,2.0\n010,2011-01-03 15:30:00,-3.25\n"
)
# (row_id, customer_id, ts, amount, is_refund) of clean_transactions for CSV_TEXT, whatever the source form.
EXPECTED = [
    (1, "007", dt.datetime(2011, 1, 1, 10, 0), 1.5, False),
    (2, "008", dt.datetime(2011, 1, 2, 0, 0), 2.0, False),
    (3, "010", dt.datetime(2011, 1, 3, 15, 30), -3.25, True),
]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["007", "008", "010"],
            "ts": pd.to_datetime(["2011-01-01 10:00:00", "2011-01-02 00:00:00", "2011-01-03 15:30:00"]),
            "amount": [1.5, 2.0, -3.25],
        }
    )


def clean_rows(data, **kwargs) -> list[tuple]:
    con = connect()
    try:
        validate_tables(con, data, **kwargs)
        return con.sql("SELECT * FROM clean_transactions ORDER BY row_id").fetchall()
    finally:
        con.close()


def write_duckdb(path: Path, **tables: pd.DataFrame) -> None:
    con = duckdb.connect(str(path))
    try:
        for name, df in tables.items():
            con.register("df_view", df)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM df_view")
            con.unregister("df_view")
    finally:
        con.close()


def _csv(tmp: Path):
    (tmp / "tx.csv").write_text(CSV_TEXT)
    return tmp / "tx.csv"


def _csv_gz(tmp: Path):
    (tmp / "tx.csv.gz").write_bytes(gzip.compress(CSV_TEXT.encode()))
    return str(tmp / "tx.csv.gz")


def _tsv(tmp: Path):
    (tmp / "tx.tsv").write_text(CSV_TEXT.replace(",", "\t"))
    return tmp / "tx.tsv"


def _semicolon_csv(tmp: Path):
    (tmp / "tx.csv").write_text(CSV_TEXT.replace(",", ";"))
    return tmp / "tx.csv"


def _parquet(tmp: Path):
    frame().to_parquet(tmp / "tx.parquet", index=False)
    return tmp / "tx.parquet"


def _duckdb_named(tmp: Path):
    write_duckdb(tmp / "shop.duckdb", tx=frame(), other=frame().head(1))
    return f"{tmp / 'shop.duckdb'}:tx"


def _duckdb_single(tmp: Path):
    write_duckdb(tmp / "shop.duckdb", tx=frame())
    return tmp / "shop.duckdb"


SOURCES = {
    "csv": _csv,
    "csv.gz": _csv_gz,
    "tsv": _tsv,
    "semicolon csv": _semicolon_csv,
    "parquet": _parquet,
    "duckdb:table": _duckdb_named,
    "duckdb single table": _duckdb_single,
    "pandas": lambda tmp: frame(),
    "polars": lambda tmp: pl.from_pandas(frame()),
    "pyarrow table": lambda tmp: pa.Table.from_pandas(frame(), preserve_index=False),
    "pyarrow record batch": lambda tmp: pa.RecordBatch.from_pandas(frame(), preserve_index=False),
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_source_form_gives_the_same_clean_rows(tmp_path, kind):
    assert clean_rows(SOURCES[kind](tmp_path)) == EXPECTED


def test_public_validate_accepts_a_path_string_and_counts_rows(tmp_path):
    report = custseq.validate_tables(str(_csv(tmp_path)))
    table = report.tables["transactions"]
    assert (table.rows_in, table.rows_used, table.rows_quarantined) == (3, 3, 0)


def test_several_csv_files_are_concatenated_by_column_name(tmp_path):
    (tmp_path / "a.csv").write_text("customer_id,ts,amount\n007,2011-01-01 10:00:00,1.5\n008,2011-01-02,2.0\n")
    # Columns in another order: files are united by name, not position.
    (tmp_path / "b.csv").write_text("amount,customer_id,ts\n-3.25,010,2011-01-03 15:30:00\n")
    assert clean_rows([tmp_path / "a.csv", tmp_path / "b.csv"]) == EXPECTED


def test_several_parquet_files_are_concatenated(tmp_path):
    df = frame()
    df.iloc[:2].to_parquet(tmp_path / "a.parquet", index=False)
    df.iloc[2:].to_parquet(tmp_path / "b.parquet", index=False)
    assert clean_rows([tmp_path / "a.parquet", tmp_path / "b.parquet"]) == EXPECTED


def test_source_of_a_list_keeps_every_path_in_order(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for p in paths:
        p.write_text(CSV_TEXT)
    source = Source.of(paths)
    assert (source.paths, source.fmt) == (tuple(paths), "csv")


def test_frame_source_is_labelled_by_its_library():
    assert Source.of(pl.from_pandas(frame()), "events").label == "events (polars frame)"
    assert Source.of(frame()).label == "transactions (pandas frame)"


# --- errors -------------------------------------------------------------------------------------------------------


def test_missing_file_names_the_path_and_the_table(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataReadError, match=re.escape(f"customers file {missing} does not exist; check the path")):
        custseq.validate_tables(_csv(tmp_path), customers=missing)


def test_missing_duckdb_file_names_the_path_without_the_table(tmp_path):
    missing = tmp_path / "shop.duckdb"
    with pytest.raises(DataReadError, match=re.escape(f"transactions file {missing} does not exist")):
        Source.of(f"{missing}:tx")


def test_folder_is_refused(tmp_path):
    with pytest.raises(DataReadError, match=re.escape(f"transactions path {tmp_path} is a folder; pass the files")):
        Source.of(tmp_path)


def test_unknown_suffix_is_refused(tmp_path):
    (tmp_path / "tx.xlsx").write_text("not really excel")
    with pytest.raises(DataReadError, match=r"tx\.xlsx has an unrecognised format; use \.csv, \.csv\.gz, \.parquet"):
        Source.of(tmp_path / "tx.xlsx")


def test_mixed_formats_are_refused(tmp_path):
    csv, parquet = _csv(tmp_path), _parquet(tmp_path)
    with pytest.raises(DataReadError, match=r"transactions: mixed sources .*pass files of one format"):
        Source.of([csv, parquet])


def test_empty_list_is_refused():
    with pytest.raises(DataReadError, match="no transactions data given"):
        Source.of([])


def test_ambiguous_duckdb_file_lists_its_tables(tmp_path):
    path = tmp_path / "shop.duckdb"
    write_duckdb(path, tx=frame(), other=frame())
    message = f"{path} holds tables ['other', 'tx']; name one as {path}:<table>"
    with pytest.raises(DataReadError, match=re.escape(message)):
        clean_rows(path)


def test_unknown_duckdb_table_lists_the_tables(tmp_path):
    path = tmp_path / "shop.duckdb"
    write_duckdb(path, tx=frame(), other=frame())
    with pytest.raises(DataReadError, match=re.escape("holds tables ['other', 'tx']; there is no table 'orders'")):
        clean_rows(f"{path}:orders")


def test_failed_duckdb_lookup_detaches_so_the_connection_stays_usable(tmp_path):
    path = tmp_path / "shop.duckdb"
    write_duckdb(path, tx=frame(), other=frame())
    con = connect()
    with pytest.raises(DataReadError):
        load_raw(con, Source.of(path), "raw_transactions")
    assert load_raw(con, Source.of(f"{path}:tx"), "raw_transactions") == ["customer_id", "ts", "amount"]
    con.close()


def test_file_that_is_not_a_duckdb_database_is_a_read_error(tmp_path):
    path = tmp_path / "shop.duckdb"
    path.write_text("customer_id,ts,amount\n")
    with pytest.raises(DataReadError, match=re.escape(f"cannot open DuckDB file {path}")):
        clean_rows(f"{path}:tx")


def _header_only_csv(tmp: Path):
    (tmp / "tx.csv").write_text("customer_id,ts,amount\n")
    return tmp / "tx.csv"


def _zero_byte_csv(tmp: Path):
    (tmp / "tx.csv").write_bytes(b"")
    return tmp / "tx.csv"


def _empty_parquet(tmp: Path):
    frame().head(0).to_parquet(tmp / "tx.parquet", index=False)
    return tmp / "tx.parquet"


def _empty_duckdb_table(tmp: Path):
    write_duckdb(tmp / "shop.duckdb", tx=frame().head(0))
    return f"{tmp / 'shop.duckdb'}:tx"


@pytest.mark.parametrize(
    "make, label",
    [
        (_header_only_csv, "tx.csv"),
        (_zero_byte_csv, "tx.csv"),
        (_empty_parquet, "tx.parquet"),
        (_empty_duckdb_table, "shop.duckdb:tx"),
        (lambda tmp: frame().head(0), "transactions (pandas frame)"),
        (lambda tmp: pa.Table.from_pandas(frame().head(0)), "transactions (pyarrow frame)"),
    ],
)
def test_empty_table_is_refused(tmp_path, make, label):
    with pytest.raises(EmptyTableError, match=re.escape(label) + r" has no rows; custseq needs at least one row"):
        clean_rows(make(tmp_path))


def test_whitespace_aligned_file_read_as_one_column_is_a_schema_error(tmp_path):
    path = tmp_path / "tx.txt"
    path.write_text("customer_id  ts          amount\n007          2011-01-01  1.5\n008          2011-01-02  2.0\n")
    with pytest.raises(SchemaError, match=r"was read as a single column 'customer_id  ts          amount'"):
        clean_rows(path)


def test_written_parquet_with_extra_columns_keeps_them_as_extras(tmp_path):
    table = pa.Table.from_pandas(frame().assign(store_region=["N", "N", "S"]), preserve_index=False)
    pq.write_table(table, tmp_path / "tx.parquet")
    con = connect()
    report = validate_tables(con, tmp_path / "tx.parquet")
    regions = con.sql("SELECT store_region FROM clean_transactions ORDER BY row_id").fetchall()
    con.close()
    assert report.mappings["transactions"].extras == {"store_region": "store_region"}
    assert regions == [("N",), ("N",), ("S",)]


def test_user_column_named_like_the_internal_row_column_is_refused():
    df = frame().assign(__row=[7, 7, 7])
    with pytest.raises(SchemaError, match="__row"):
        clean_rows(df)


# --- every line counted -------------------------------------------------------------------------------------------


def records_after_header(path: Path) -> int:
    """The test's own count of a CSV file's records (blank lines included), apart from custseq's reader."""
    with open(path, newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def quarantined_rules(tmp_path: Path, data, **kwargs) -> tuple[custseq.validate.tables.CleanTable, dict[int, str]]:
    folder = tmp_path / "q"
    table = validate_tables(connect(), data, quarantine_dir=folder, **kwargs).tables["transactions"]
    rows = pq.read_table(folder / "transactions.parquet").to_pylist() if table.rows_quarantined else []
    return table, {r["row_number"]: r["rule"] for r in rows}


def test_a_comment_like_trailer_drops_no_row_whose_id_starts_with_hash(tmp_path):
    # An ERP export: ids like '#17' and a trailer line once made the sniffer take '#' for a comment marker.
    lines = ["customer_id,ts,amount"]
    lines += [f"{'#' if i % 5 == 0 else ''}{i % 40},2020-01-{i % 28 + 1:02d},{i}" for i in range(300)]
    path = tmp_path / "erp.csv"
    path.write_text("\n".join([*lines, "# exported by ERP"]) + "\n")
    table, rules = quarantined_rules(tmp_path, path)
    assert table.rows_in == records_after_header(path) == 301
    assert (table.rows_used, table.rows_quarantined) == (300, 1)
    assert rules == {301: "wrong_field_count"}
    assert table.reasons["wrong_field_count"] == "the line has more or fewer fields than the header line"


def test_blank_and_ragged_lines_are_quarantined_at_their_place(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(
        "customer_id,ts,amount\n"
        "a,2020-01-01,1\n"  # 1
        "\n"  # 2: blank
        '"b\nb",2020-01-02,2\n'  # 3: a quoted field over two lines is one record
        "c,2020-01-03,3,extra\n"  # 4: too many fields
        "d,2020-01-04\n"  # 5: too few
        "e,2020-01-05,5\n"  # 6
    )
    con = connect()
    table = validate_tables(con, path).tables["transactions"]
    assert table.rows_in == records_after_header(path) == 6
    assert table.rule_counts == {"blank_line": 1, "wrong_field_count": 2}
    kept = con.sql("SELECT row_id, customer_id FROM clean_transactions ORDER BY row_id").fetchall()
    assert kept == [(1, "a"), (3, "b\nb"), (6, "e")]  # row ids stay the file's record numbers


def test_several_files_are_accounted_line_by_line_in_order(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("customer_id,ts,amount\na,2020-01-01,1\n\nb,2020-01-02,2\n")
    second.write_text("amount,customer_id,ts\n3,c,2020-01-03\n4,d\n")
    table, rules = quarantined_rules(tmp_path, [first, second])
    assert table.rows_in == records_after_header(first) + records_after_header(second) == 5
    assert rules == {2: "blank_line", 5: "wrong_field_count"}
    assert table.rows_used == 3


def test_a_file_that_is_not_utf8_is_an_encoding_error_naming_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("customer_id,ts,amount\nA,2020-01-01,1\nRen\u00e9,2020-01-02,2\n".encode("latin-1"))
    with pytest.raises(DataReadError, match=r"latin1\.csv line 3 is not UTF-8 text \(an encoding problem\)"):
        validate_tables(connect(), path)


def test_a_sample_read_never_leaves_a_bad_lines_table(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,ts,amount\na,2020-01-01,1\n\nb,2020-01-02\n")
    con = connect()
    load_raw(con, Source.of(path), "raw_tx")
    assert con.sql("SELECT count(*) FROM raw_tx__bad_lines").fetchall() == [(2,)]
    load_raw(con, Source.of(path), "raw_tx", rows=10)
    assert not con.sql("SELECT * FROM duckdb_tables() WHERE table_name = 'raw_tx__bad_lines'").fetchall()
