"""Typed staging: timestamps in many formats and zones, ids as text, booleans, refunds and unparsable columns."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from custseq.config import ColumnsConfig, RunConfig, ValidationConfig
from custseq.errors import SchemaError
from custseq.io.engine import connect
from custseq.validate.tables import validate_tables


def validated(data, table: str = "transactions", **kwargs):
    """Validate into a fresh connection; return the report and the rows of clean_<table> as dicts."""
    con = connect()
    try:
        report = validate_tables(con, data, **kwargs)
        rel = con.sql(f"SELECT * FROM clean_{table} ORDER BY row_id")
        rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        return report, rows
    finally:
        con.close()


def tx_csv(tmp_path, ts: list[str], name: str = "tx.csv"):
    lines = ["customer_id,ts,amount", *(f"C{i},{t},1" for i, t in enumerate(ts))]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# --- timestamps ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, expected, note",
    [
        (["20110101", "20111231"], [dt.datetime(2011, 1, 1), dt.datetime(2011, 12, 31)], "format %Y%m%d detected"),
        (["2011-01-01", "2011-12-31"], [dt.datetime(2011, 1, 1), dt.datetime(2011, 12, 31)], "format ISO 8601"),
        (
            ["2011-01-01 10:15:30", "2011-12-31T23:59:00"],
            [dt.datetime(2011, 1, 1, 10, 15, 30), dt.datetime(2011, 12, 31, 23, 59)],
            "format ISO 8601 detected",
        ),
        (
            ["12/01/2010 08:26", "12/31/2010 17:05"],
            [dt.datetime(2010, 12, 1, 8, 26), dt.datetime(2010, 12, 31, 17, 5)],
            "format %m/%d/%Y %H:%M detected",
        ),
        (["31/12/2010", "13/01/2011"], [dt.datetime(2010, 12, 31), dt.datetime(2011, 1, 13)], "format %d/%m/%Y"),
        (["31.12.2010", "01.02.2011"], [dt.datetime(2010, 12, 31), dt.datetime(2011, 2, 1)], "format %d.%m.%Y"),
    ],
)
def test_text_timestamp_formats_are_detected(tmp_path, values, expected, note):
    report, rows = validated(tx_csv(tmp_path, values))
    assert [r["ts"] for r in rows] == expected
    assert any(n.startswith(f"transactions.ts (ts): {note}") for n in report.tables["transactions"].notes)


def test_ambiguous_day_month_order_is_an_error_naming_the_setting(tmp_path):
    with pytest.raises(SchemaError) as e:
        validated(tx_csv(tmp_path, ["01/02/2011", "03/04/2011", "05/06/2011", "07/08/2011"]))
    message = str(e.value)
    assert "transactions column 'ts' (used as ts): the day/month order of its dates cannot be told" in message
    assert "['01/02/2011', '03/04/2011', '05/06/2011']" in message
    assert '[validation] ts_format = "%d/%m/%Y" if days come first, or "%m/%d/%Y" if months do' in message


def test_one_day_over_twelve_settles_the_order(tmp_path):
    report, rows = validated(tx_csv(tmp_path, ["01/02/2011", "03/04/2011", "25/12/2011"]))
    assert [r["ts"] for r in rows] == [dt.datetime(2011, 2, 1), dt.datetime(2011, 4, 3), dt.datetime(2011, 12, 25)]
    assert "transactions.ts (ts): format %d/%m/%Y detected" in report.tables["transactions"].notes


def test_configured_format_overrides_detection_and_quarantines_other_formats(tmp_path):
    cfg = RunConfig(validation=ValidationConfig(ts_format="%d/%m/%Y"))
    report, rows = validated(tx_csv(tmp_path, ["01/02/2011", "03/04/2011", "2011-05-06"]), config=cfg)
    table = report.tables["transactions"]
    assert [r["ts"] for r in rows] == [dt.datetime(2011, 2, 1), dt.datetime(2011, 4, 3)]
    assert table.rule_counts == {"unparsable_ts": 1}
    assert "transactions.ts (ts): format %d/%m/%Y (configured)" in table.notes


def test_time_zone_offsets_in_text_are_converted_to_naive_utc(tmp_path):
    values = ["2011-01-01T10:00:00+02:00", "2011-01-01T10:00:00Z", "2011-01-01 10:00:00", "2011-06-30T23:30:00-05:00"]
    report, rows = validated(tx_csv(tmp_path, values))
    assert [r["ts"] for r in rows] == [
        dt.datetime(2011, 1, 1, 8, 0),
        dt.datetime(2011, 1, 1, 10, 0),
        dt.datetime(2011, 1, 1, 10, 0),  # no offset: taken as UTC already
        dt.datetime(2011, 7, 1, 4, 30),
    ]
    assert all(r["ts"].tzinfo is None for r in rows)
    note = "transactions.ts (ts): ISO 8601 with time-zone offsets, converted to UTC"
    assert note in report.tables["transactions"].notes


def berlin_frame() -> pd.DataFrame:
    local = pd.to_datetime(["2011-01-15 10:00", "2011-07-15 10:00"]).tz_localize("Europe/Berlin")
    return pd.DataFrame({"customer_id": ["A", "B"], "ts": local, "amount": [1.0, 2.0]})


@pytest.mark.parametrize(
    "make",
    [
        berlin_frame,
        lambda: pl.from_pandas(berlin_frame()),
        lambda: pa.Table.from_pandas(berlin_frame(), preserve_index=False),
    ],
    ids=["pandas", "polars", "pyarrow"],
)
def test_time_zone_aware_columns_are_normalised_to_utc(make):
    report, rows = validated(make())
    # Berlin is UTC+1 in winter and UTC+2 in summer.
    assert [r["ts"] for r in rows] == [dt.datetime(2011, 1, 15, 9, 0), dt.datetime(2011, 7, 15, 8, 0)]
    assert "transactions.ts (ts): time zone converted to UTC" in report.tables["transactions"].notes


def test_time_zone_aware_parquet_is_normalised_to_utc(tmp_path):
    berlin_frame().to_parquet(tmp_path / "tx.parquet", index=False)
    _, rows = validated(tmp_path / "tx.parquet")
    assert [r["ts"] for r in rows] == [dt.datetime(2011, 1, 15, 9, 0), dt.datetime(2011, 7, 15, 8, 0)]


def test_date_typed_column_is_read_as_midnight():
    df = pd.DataFrame({"customer_id": ["A"], "ts": [dt.date(2011, 3, 4)], "amount": [1.0]})
    report, rows = validated(pa.Table.from_pandas(df, preserve_index=False))
    assert rows[0]["ts"] == dt.datetime(2011, 3, 4)
    assert report.tables["transactions"].rows_used == 1


# --- ids ----------------------------------------------------------------------------------------------------------


def test_ids_keep_leading_zeros(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n007,2011-01-01,1\n0070,2011-01-01,2\n 70 ,2011-01-01,3\n")
    _, rows = validated(tmp_path / "tx.csv")
    assert [r["customer_id"] for r in rows] == ["007", "0070", "70"]


def test_float_formatted_integer_ids_lose_the_decimal_part(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n17850.0,2011-01-01,1\n013047.00,2011-01-01,2\n")
    _, rows = validated(tmp_path / "tx.csv")
    assert [r["customer_id"] for r in rows] == ["17850", "013047"]


def test_float_formatted_ids_are_kept_verbatim_when_any_id_is_not_integral(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n17850.0,2011-01-01,1\n13047.5,2011-01-01,2\n")
    _, rows = validated(tmp_path / "tx.csv")
    assert [r["customer_id"] for r in rows] == ["17850.0", "13047.5"]


def test_float_typed_ids_with_missing_values_become_integer_text():
    # pandas turns an integer id column with a gap into float64 with NaN (UCI Online Retail).
    df = pd.DataFrame({"customer_id": [17850.0, np.nan, 13047.0], "ts": ["2011-01-01"] * 3, "amount": [1.0, 2.0, 3.0]})
    report, rows = validated(df)
    assert [r["customer_id"] for r in rows] == ["17850", "13047"]
    assert report.tables["transactions"].rule_counts == {"missing_customer_id": 1}


def test_integer_typed_ids_become_text():
    df = pd.DataFrame({"customer_id": [17850, 13047], "ts": ["2011-01-01"] * 2, "amount": [1.0, 2.0]})
    _, rows = validated(df)
    assert [r["customer_id"] for r in rows] == ["17850", "13047"]


def test_nan_float_id_in_an_arrow_table_is_quarantined_not_a_crash():
    table = pa.table({"customer_id": [17850.0, float("nan")], "ts": ["2011-01-01", "2011-01-02"], "amount": [1.0, 2.0]})
    report, rows = validated(table)
    assert [r["customer_id"] for r in rows] == ["17850"]
    assert report.tables["transactions"].rule_counts == {"missing_customer_id": 1}


# --- unparsable columns -------------------------------------------------------------------------------------------


def test_entirely_unparsable_timestamp_column_is_a_schema_error_with_examples(tmp_path):
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "transactions column 'ts' (used as ts) could not be parsed in any row, e.g. ['hello']; "
            'set [validation] ts_format (e.g. "%d/%m/%Y") or map another column'
        ),
    ):
        validated(tx_csv(tmp_path, ["hello", "hello", "hello"]))


def test_entirely_unparsable_amount_column_is_a_schema_error(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,Paid\nA,2011-01-01,ten\nB,2011-01-01,ten\n")
    cfg = RunConfig(columns=ColumnsConfig(transactions={"amount": "Paid"}))
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "transactions column 'Paid' (used as amount) could not be parsed in any row, e.g. ['ten']; "
            "map another column with --column amount=<column>"
        ),
    ):
        validated(tmp_path / "tx.csv", config=cfg)


def test_unparsable_events_timestamp_names_the_events_table(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2011-01-01,1\n")
    (tmp_path / "ev.csv").write_text("customer_id,ts,event\nA,soon,login\n")
    with pytest.raises(SchemaError, match=re.escape("events column 'ts' (used as ts) could not be parsed in any row")):
        validated(tmp_path / "tx.csv", events=tmp_path / "ev.csv")


def test_a_column_that_parses_in_some_rows_quarantines_only_the_bad_rows(tmp_path):
    report, rows = validated(tx_csv(tmp_path, ["2011-01-01", "hello", "2011-01-03"]))
    assert [r["customer_id"] for r in rows] == ["C0", "C2"]
    assert report.tables["transactions"].rule_counts == {"unparsable_ts": 1}


# --- booleans, refunds and cost -----------------------------------------------------------------------------------

REFUND_WORDS = {
    "true": True,
    "TRUE": True,
    "t": True,
    "Yes": True,
    "y": True,
    "1": True,
    " false ": False,
    "F": False,
    "no": False,
    "N": False,
    "0": False,
}


def test_is_refund_words_are_parsed_and_refunds_carry_negative_amount_and_cost(tmp_path):
    lines = ["customer_id,ts,amount,cost,is_refund"]
    lines += [f"C{i},2011-01-01,10,4,{word}" for i, word in enumerate(REFUND_WORDS)]
    (tmp_path / "tx.csv").write_text("\n".join(lines) + "\n")
    report, rows = validated(tmp_path / "tx.csv")
    expected = list(REFUND_WORDS.values())
    assert [r["is_refund"] for r in rows] == expected
    assert [r["amount"] for r in rows] == [-10.0 if refund else 10.0 for refund in expected]
    assert [r["cost"] for r in rows] == [-4.0 if refund else 4.0 for refund in expected]
    assert report.tables["transactions"].rows_quarantined == 0


def test_refund_with_an_already_negative_amount_stays_negative(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,cost,is_refund\nA,2011-01-01,-10,-4,yes\n")
    _, rows = validated(tmp_path / "tx.csv")
    assert (rows[0]["amount"], rows[0]["cost"], rows[0]["is_refund"]) == (-10.0, -4.0, True)


def test_unknown_refund_word_is_quarantined_and_empty_means_not_a_refund(tmp_path):
    (tmp_path / "tx.csv").write_text(
        "customer_id,ts,amount,is_refund\nA,2011-01-01,10,maybe\nB,2011-01-01,10,\nC,2011-01-01,10,no\n"
    )
    report, rows = validated(tmp_path / "tx.csv")
    assert report.tables["transactions"].rule_counts == {"unparsable_is_refund": 1}
    assert [(r["customer_id"], r["amount"], r["is_refund"]) for r in rows] == [("B", 10.0, False), ("C", 10.0, False)]


@pytest.mark.parametrize(
    "flags",
    [[True, False], [1, 0]],
    ids=["boolean column", "integer column"],
)
def test_typed_refund_columns_are_read(flags):
    df = pd.DataFrame({"customer_id": ["A", "B"], "ts": ["2011-01-01"] * 2, "amount": [5.0, 5.0], "is_refund": flags})
    _, rows = validated(df)
    assert [(r["amount"], r["is_refund"]) for r in rows] == [(-5.0, True), (5.0, False)]


def test_negative_amount_without_a_refund_column_is_a_refund(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2011-01-01,-2.5\nA,2011-01-02,2.5\n")
    _, rows = validated(tmp_path / "tx.csv")
    assert [(r["amount"], r["is_refund"]) for r in rows] == [(-2.5, True), (2.5, False)]


def test_every_refund_row_carries_a_non_positive_cost(tmp_path):
    (tmp_path / "tx.csv").write_text(
        "customer_id,ts,amount,cost,is_refund\nA,2011-01-01,10,4,yes\nB,2011-01-01,-10,4,no\n"
    )
    _, rows = validated(tmp_path / "tx.csv")
    assert [(r["amount"], r["cost"], r["is_refund"]) for r in rows] == [(-10.0, -4.0, True), (-10.0, -4.0, True)]
