"""Never a silent guess, and never a say for later rows: how each column is read is decided by the rows up to
the as-of date, and what cannot be told is an error naming the column, examples and the setting."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from custseq.config import RunConfig, ValidationConfig
from custseq.errors import ConfigError, SchemaError
from custseq.io.engine import connect
from custseq.io.sources import Source, load_raw
from custseq.schema import Kind
from custseq.validate.tables import validate_tables

CUTOFF = dt.datetime(2023, 7, 1)  # as-of 2023-06-30


def validated(data, *, config: RunConfig | None = None, cutoff: dt.datetime | None = None, **kwargs):
    con = connect()
    try:
        report = validate_tables(con, data, config=config, future_cutoff=cutoff, **kwargs)
        rel = con.sql("SELECT * FROM clean_transactions ORDER BY row_id")
        return report, [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    finally:
        con.close()


def csv(tmp_path, header: str, lines: list[str], name: str = "tx.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


# --- timestamps: refused, not guessed -----------------------------------------------------------------------------


def test_two_digit_years_are_an_error_naming_the_formats(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", [f"C{i},0{i}/15/23,1" for i in range(1, 5)])
    with pytest.raises(SchemaError) as e:
        validated(path)
    message = str(e.value)
    assert "transactions column 'ts' (used as ts) has two-digit years, e.g. ['01/15/23', '02/15/23', '03/15/23']" in (
        message
    )
    assert '[validation] ts_format = "%m/%d/%y" or "%d/%m/%y"' in message


def test_two_digit_years_read_with_the_configured_format(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", ["A,01/15/23,1", "B,12/31/21,1"])
    _, rows = validated(path, config=RunConfig(validation=ValidationConfig(ts_format="%m/%d/%y")))
    assert [r["ts"] for r in rows] == [dt.datetime(2023, 1, 15), dt.datetime(2021, 12, 31)]


def test_epoch_numbers_are_an_error_naming_the_unit(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", ["A,1672531200000,1", "B,1672617600000,1"])
    with pytest.raises(SchemaError, match=re.escape("holds numbers, not dates, e.g. [")) as e:
        validated(path)
    assert '[validation] ts_format = "epoch_ms"' in str(e.value)


@pytest.mark.parametrize(
    "fmt, value", [("epoch_s", "1672531200"), ("epoch_ms", "1672531200000"), ("epoch_us", "1672531200000000")]
)
def test_epoch_numbers_read_with_the_configured_unit(tmp_path, fmt, value):
    path = csv(tmp_path, "customer_id,ts,amount", [f"A,{value},1"])
    _, rows = validated(path, config=RunConfig(validation=ValidationConfig(ts_format=fmt)))
    assert [r["ts"] for r in rows] == [dt.datetime(2023, 1, 1)]


def test_an_integer_epoch_column_in_a_frame_is_refused_too():
    frame = pd.DataFrame({"customer_id": ["A", "B"], "ts": [1672531200, 1672617600], "amount": [1.0, 2.0]})
    with pytest.raises(SchemaError, match=re.escape('ts_format = "epoch_s"')):
        validated(frame)


def test_an_unknown_configured_format_is_a_config_error(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", ["A,2023-01-01,1"])
    with pytest.raises(ConfigError, match=re.escape("validation.ts_format '%Q' is not a strptime format")):
        validated(path, config=RunConfig(validation=ValidationConfig(ts_format="%Q")))


def test_a_year_must_have_four_digits(tmp_path):
    # a two-digit year among four-digit ones is not year 23
    path = csv(tmp_path, "customer_id,ts,amount", ["A,15/01/2023,1", "B,16/01/2023,1", "C,17/01/23,1"])
    report, rows = validated(path)
    assert [r["customer_id"] for r in rows] == ["A", "B"]
    assert report.tables["transactions"].rule_counts == {"unparsable_ts": 1}


# --- time zones: honoured or refused ------------------------------------------------------------------------------


def test_zone_names_and_offsets_are_converted_to_utc(tmp_path):
    values = ["2023-01-15 10:00:00 Europe/Paris", "2023-07-15 10:00:00 Europe/Paris", "2023-01-15T10:00:00+02:00"]
    path = csv(tmp_path, "customer_id,ts,amount", [f"C{i},{v},1" for i, v in enumerate(values)])
    report, rows = validated(path)
    assert [r["ts"] for r in rows] == [
        dt.datetime(2023, 1, 15, 9),
        dt.datetime(2023, 7, 15, 8),
        dt.datetime(2023, 1, 15, 8),
    ]
    assert (
        "transactions.ts (ts): ISO 8601 with time-zone offsets, converted to UTC" in report.tables["transactions"].notes
    )


def test_an_unknown_zone_is_quarantined_not_dropped(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", ["A,2023-01-15 10:00:00,1", "B,2023-01-15 10:00:00 Mars/Olympus,1"])
    report, rows = validated(path)
    assert [r["customer_id"] for r in rows] == ["A"]
    assert report.tables["transactions"].rule_counts == {"unparsable_ts": 1}


# --- ids, numbers, columns, currencies ----------------------------------------------------------------------------


def test_placeholder_ids_are_quarantined_with_their_reason(tmp_path):
    ids = ["NULL", "None", "NaN", "nan", "N/A", "NA", "null", "#N/A", "", "   ", "C1"]
    path = csv(tmp_path, "customer_id,ts,amount", [f'"{i}",2023-01-0{1 + k % 9},1' for k, i in enumerate(ids)])
    report, rows = validated(path)
    table = report.tables["transactions"]
    assert [r["customer_id"] for r in rows] == ["C1"]
    assert table.rule_counts == {"placeholder_customer_id": 8, "missing_customer_id": 2}
    assert table.reasons["placeholder_customer_id"].startswith("customer id is a placeholder")


def test_numbers_are_read_strictly(tmp_path):
    lines = ["A,2023-01-01,1_000,1", "B,2023-01-02,1e3,2", "C,2023-01-03, -2.5 ,3", "D,2023-01-04,0x10,4"]
    path = csv(tmp_path, "customer_id,ts,amount,discount", lines)
    report, rows = validated(path)
    assert [(r["customer_id"], r["amount"]) for r in rows] == [("B", 1000.0), ("C", -2.5)]
    assert report.tables["transactions"].rule_counts == {"unparsable_amount": 2}


def test_an_extra_column_with_digit_separators_is_not_a_number(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount,size", ["A,2023-01-01,1,1_000", "B,2023-01-02,1,2_000"])
    report, _ = validated(path)
    assert report.tables["transactions"].kinds["size"] is not Kind.NUMBER


def test_a_repeated_header_name_is_refused(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount,Amount", ["A,2023-01-01,1,2"])
    con = connect()
    try:
        with pytest.raises(SchemaError, match=re.escape("names the column(s) ['amount'] more than once")):
            load_raw(con, Source.of(path), "raw")
    finally:
        con.close()


def test_a_repeated_header_name_in_a_semicolon_file_is_refused(tmp_path):
    path = csv(tmp_path, "customer_id;ts;amount;amount", ["A;2023-01-01;1;2"])
    with pytest.raises(SchemaError, match="more than once in its header"):
        validated(path)


def test_mixed_currencies_are_refused_by_validation_unless_allowed(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount,currency", ["A,2023-01-01,1,USD", "B,2023-01-02,2,EUR"])
    with pytest.raises(SchemaError, match=re.escape("2 currencies (EUR 50%, USD 50%)")):
        validated(path)
    _, rows = validated(path, config=RunConfig(validation=ValidationConfig(mixed_currencies="allow")))
    assert len(rows) == 2


def test_a_later_currency_is_not_mixed_into_the_past(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount,currency", ["A,2023-01-01,1,USD", "B,2023-08-02,2,EUR"])
    _, rows = validated(path, cutoff=CUTOFF)
    assert len(rows) == 2


# --- later rows have no say ---------------------------------------------------------------------------------------


def test_later_rows_at_the_top_cannot_flip_the_day_month_order(tmp_path):
    past = [f"P{d},{d}/03/2023,1" for d in range(13, 29)]  # day first, settled by days over 12
    later = [f"F{k},0{m}/1{k + 3}/2023,1" for k in range(3) for m in range(8, 10)] * 50  # month first, after as-of
    report, rows = validated(csv(tmp_path, "customer_id,ts,amount", later + past), cutoff=CUTOFF)
    assert "transactions.ts (ts): format %d/%m/%Y detected" in report.tables["transactions"].notes
    assert [r["ts"] for r in rows if r["customer_id"].startswith("P")] == [
        dt.datetime(2023, 3, d) for d in range(13, 29)
    ]


def test_later_epoch_or_two_digit_year_rows_are_not_an_error(tmp_path):
    past = ["A,2023-01-01,1", "B,2023-02-01,1"]
    later = ["C,1893456000,1", "D,1893456000000,1", "E,12/31/29,1"] * 10  # 2030, 2030, 2029
    report, rows = validated(csv(tmp_path, "customer_id,ts,amount", later + past), cutoff=CUTOFF)
    assert [r["customer_id"] for r in rows] == ["A", "B"]
    assert report.tables["transactions"].rule_counts == {"unparsable_ts": 30}


def test_later_rows_cannot_change_an_extra_columns_kind(tmp_path):
    past = [f"C{i % 5},2023-0{1 + i % 6}-01,1,{i % 3}.5,{'north' if i % 2 else 'south'}" for i in range(40)]
    later = [f"C{i},2023-09-01,1,N/A,region{i}" for i in range(300)]
    path = csv(tmp_path, "customer_id,ts,amount,discount,region", past + later)
    report, _ = validated(path, cutoff=CUTOFF)
    kinds = report.tables["transactions"].kinds
    assert (kinds["discount"], kinds["region"]) == (Kind.NUMBER, Kind.CATEGORY)
    unbounded, _ = validated(path)  # without an as-of date every row is the past
    assert (unbounded.tables["transactions"].kinds["discount"], unbounded.tables["transactions"].kinds["region"]) == (
        Kind.CATEGORY,
        Kind.TEXT,
    )


def test_a_later_text_id_cannot_rename_the_past_ids(tmp_path):
    path = csv(tmp_path, "customer_id,ts,amount", ["17.0,2023-01-01,1", "18.0,2023-02-01,1", "X1,2023-09-01,1"])
    _, rows = validated(path, cutoff=CUTOFF)
    assert [r["customer_id"] for r in rows] == ["17", "18", "X1"]


def test_later_float_ids_cannot_turn_integer_ids_into_text():
    frame = pd.DataFrame(
        {
            "customer_id": [17.0, 18.0, 19.5],
            "ts": ["2023-01-01", "2023-02-01", "2023-09-01"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    report, _ = validated(frame, cutoff=CUTOFF)
    assert report.accounts()["transactions"].customer_id_type == "integer"
    unbounded, _ = validated(frame)
    assert unbounded.accounts()["transactions"].customer_id_type == "text"
