"""Column mapping: explicit mappings, detection by name, and the errors that name what is missing."""

from __future__ import annotations

import datetime as dt
import re

import pytest

import custseq
from custseq.config import ColumnsConfig, RunConfig
from custseq.errors import MappingError, SchemaError
from custseq.io.engine import connect
from custseq.io.mapping import parse_mapping_items, resolve
from custseq.schema import CUSTOMERS, EVENTS, TRANSACTIONS, Kind
from custseq.validate.tables import validate_tables

UCI_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
UCI_CSV = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    # one day over 12 settles the month-first order (an order the data cannot tell is an error)
    "536365,85123A,WHITE HANGING HEART,6,12/01/2010 08:26,2.55,17850.0,United Kingdom\n"
    "536365,71053,WHITE METAL LANTERN,6,12/01/2010 08:26,3.39,17850.0,United Kingdom\n"
    "536366,22633,HAND WARMER UNION JACK,-2,12/01/2010 08:28,1.85,17850.0,United Kingdom\n"
    "536367,84879,ASSORTED COLOUR BIRD,32,12/13/2010 08:34,1.69,13047.0,France\n"
)


def validated(data, **kwargs):
    """Validate into a fresh connection; return the report and the clean transactions rows as dicts."""
    con = connect()
    try:
        report = validate_tables(con, data, **kwargs)
        rel = con.sql("SELECT * FROM clean_transactions ORDER BY row_id")
        rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        return report, rows
    finally:
        con.close()


# --- parse_mapping_items ------------------------------------------------------------------------------------------


def test_parse_mapping_items_splits_by_table():
    items = ["customer_id=CustomerID", "events.ts=When", "customers.signup_ts = Joined ", "transactions.amount=Q*P"]
    assert parse_mapping_items(items) == {
        "transactions": {"customer_id": "CustomerID", "amount": "Q*P"},
        "customers": {"signup_ts": "Joined"},
        "events": {"ts": "When"},
    }


@pytest.mark.parametrize(
    "item, message",
    [
        ("customer_id", "--column 'customer_id' is not of the form name=column, e.g. customer_id=CustomerID"),
        ("=CustomerID", "--column '=CustomerID' is not of the form name=column"),
        ("customer_id= ", "--column 'customer_id= ' is not of the form name=column"),
        ("orders.ts=When", "--column 'orders.ts=When': unknown table 'orders'; use transactions, customers or events"),
    ],
)
def test_parse_mapping_items_refuses_malformed_items(item, message):
    with pytest.raises(MappingError, match=re.escape(message)):
        parse_mapping_items([item])


def test_cli_style_items_map_transactions_and_events(tmp_path):
    (tmp_path / "tx.csv").write_text("Who,Day,Paid\nA1,2011-01-01,5\nA2,2011-01-02,7\n")
    (tmp_path / "ev.csv").write_text("customer_id,When,event\nA1,2011-01-01 09:00,login\nA2,2011-01-03 10:00,view\n")
    items = parse_mapping_items(["customer_id=Who", "ts=Day", "amount=Paid", "events.ts=When"])
    cfg = RunConfig(columns=ColumnsConfig(**items))
    report = custseq.validate_tables(tmp_path / "tx.csv", events=tmp_path / "ev.csv", config=cfg)
    assert report.mappings["transactions"].canonical == {"customer_id": "Who", "ts": "Day", "amount": "Paid"}
    assert report.mappings["transactions"].detected == ()
    assert report.mappings["events"].canonical == {"ts": "When", "customer_id": "customer_id", "event": "event"}
    assert report.mappings["events"].detected == ("customer_id", "event")
    assert report.tables["events"].rows_used == 2


# --- explicit mapping through RunConfig -----------------------------------------------------------------------


def test_config_mapping_reads_renamed_columns(tmp_path):
    (tmp_path / "tx.csv").write_text("Who,When,HowMuch\n0042,2011-03-01,9.5\n")
    cfg = RunConfig(columns=ColumnsConfig(transactions={"customer_id": "Who", "ts": "When", "amount": "HowMuch"}))
    report, rows = validated(tmp_path / "tx.csv", config=cfg)
    expected = {"row_id": 1, "customer_id": "0042", "ts": dt.datetime(2011, 3, 1), "amount": 9.5, "is_refund": False}
    assert rows == [expected]
    assert report.mappings["transactions"].describe() == [
        ("customer_id", "Who", "mapped"),
        ("ts", "When", "mapped"),
        ("amount", "HowMuch", "mapped"),
    ]


def test_explicit_mapping_wins_over_detection_and_the_displaced_column_becomes_an_extra(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,Revenue\nA,2011-01-01,1,100\n")
    cfg = RunConfig(columns=ColumnsConfig(transactions={"amount": "Revenue"}))
    report, rows = validated(tmp_path / "tx.csv", config=cfg)
    cmap = report.mappings["transactions"]
    assert cmap.canonical["amount"] == "Revenue"
    assert cmap.extras == {"amount_x": "amount"}  # "amount" is a reserved name, so the extra gets a suffix
    assert (rows[0]["amount"], rows[0]["amount_x"]) == (100.0, 1.0)


def test_unknown_role_names_it_and_lists_the_roles():
    with pytest.raises(
        MappingError,
        match=re.escape(
            "--column basket=InvoiceNo: transactions has no column role 'basket'; roles are "
            "['customer_id', 'ts', 'amount', 'product', 'category', 'channel', 'quantity', 'is_refund', 'cost', "
            "'currency', 'order_id']"
        ),
    ):
        resolve(TRANSACTIONS, UCI_COLUMNS, {"basket": "InvoiceNo"})


def test_unknown_source_column_names_it_and_lists_the_columns(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2011-01-01,1\n")
    cfg = RunConfig(columns=ColumnsConfig(transactions={"customer_id": "CustID"}))
    with pytest.raises(
        MappingError,
        match=re.escape(
            "--column customer_id=CustID: transactions has no column 'CustID'; "
            "its columns are ['customer_id', 'ts', 'amount']"
        ),
    ):
        custseq.validate_tables(tmp_path / "tx.csv", config=cfg)


def test_unknown_column_in_an_amount_product_is_named():
    with pytest.raises(MappingError, match=re.escape("transactions has no column 'Price'; its columns are [")):
        resolve(TRANSACTIONS, UCI_COLUMNS, {"amount": "Quantity * Price"})


def test_amount_product_of_three_columns_is_refused():
    with pytest.raises(MappingError, match=re.escape("a product takes exactly two columns")):
        resolve(TRANSACTIONS, UCI_COLUMNS, {"amount": "Quantity*UnitPrice*Quantity"})


def test_missing_amount_is_named_with_the_product_hint(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts\nA,2011-01-01\n")
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "transactions is missing column(s) ['amount']; found ['customer_id', 'ts']. "
            "Map them with --column amount=<your column> (or amount=<quantity column>*<price column>)"
        ),
    ):
        custseq.validate_tables(tmp_path / "tx.csv")


def test_quantity_without_a_price_column_does_not_make_an_amount():
    with pytest.raises(SchemaError, match=re.escape("missing column(s) ['amount']")):
        resolve(TRANSACTIONS, ["CustomerID", "InvoiceDate", "Quantity"], {})


def test_missing_required_events_column_is_named():
    with pytest.raises(SchemaError, match=re.escape("events is missing column(s) ['event']; found ['user_id', 'ts']")):
        resolve(EVENTS, ["user_id", "ts"], {})


def test_a_missing_column_of_another_table_names_the_flag_and_the_python_setting_that_fix_it():
    with pytest.raises(SchemaError) as e:
        resolve(EVENTS, ["user_id", "ts"], {})
    assert "Map them with --column events.event=<your column>" in str(e.value)
    assert 'columns=ColumnsConfig(events={"event": "<your column>"}) in the RunConfig' in str(e.value)


def test_detection_off_requires_every_column_to_be_mapped():
    with pytest.raises(SchemaError, match=re.escape("missing column(s) ['customer_id', 'ts', 'amount']")):
        resolve(TRANSACTIONS, ["customer_id", "ts", "amount"], {}, detect=False)
    cmap = resolve(
        TRANSACTIONS,
        ["customer_id", "ts", "amount", "sku"],
        {"customer_id": "customer_id", "ts": "ts", "amount": "amount"},
        detect=False,
    )
    assert (cmap.detected, cmap.extras) == ((), {"sku": "sku"})


# --- detection ----------------------------------------------------------------------------------------------------


def test_uci_online_retail_columns_are_detected():
    cmap = resolve(TRANSACTIONS, UCI_COLUMNS, {})
    assert cmap.canonical == {
        "customer_id": "CustomerID",
        "ts": "InvoiceDate",
        "product": "StockCode",
        "quantity": "Quantity",
        "order_id": "InvoiceNo",
    }
    assert cmap.amount_product == ("Quantity", "UnitPrice")
    assert cmap.extras == {"description": "Description", "country": "Country"}
    assert cmap.text_hints == ("description",)
    assert set(cmap.detected) == {"customer_id", "ts", "product", "quantity", "order_id", "amount"}
    assert cmap.describe() == [
        ("customer_id", "CustomerID", "detected"),
        ("ts", "InvoiceDate", "detected"),
        ("product", "StockCode", "detected"),
        ("quantity", "Quantity", "detected"),
        ("order_id", "InvoiceNo", "detected"),
        ("amount", "Quantity × UnitPrice", "detected"),
    ]


def test_uci_online_retail_file_is_parsed_end_to_end(tmp_path):
    (tmp_path / "retail.csv").write_text(UCI_CSV)
    report, rows = validated(tmp_path / "retail.csv")
    table = report.tables["transactions"]
    assert table.kinds["country"] is Kind.CATEGORY
    assert table.kinds["description"] is Kind.TEXT
    assert "transactions.amount = Quantity × UnitPrice" in table.notes
    assert [r["amount"] for r in rows] == pytest.approx([6 * 2.55, 6 * 3.39, -2 * 1.85, 32 * 1.69])
    assert [(r["customer_id"], r["order_id"], r["product"], r["is_refund"]) for r in rows] == [
        ("17850", "536365", "85123A", False),
        ("17850", "536365", "71053", False),
        ("17850", "536366", "22633", True),
        ("13047", "536367", "84879", False),
    ]
    assert rows[0]["ts"] == dt.datetime(2010, 12, 1, 8, 26)
    assert report.accounts()["transactions"].to_json()["mapping"][-1] == {
        "column": "amount",
        "source": "Quantity × UnitPrice",
        "how": "detected",
    }


def test_an_amount_column_wins_over_quantity_times_price():
    cmap = resolve(TRANSACTIONS, ["CustomerID", "InvoiceDate", "Quantity", "UnitPrice", "Sales"], {})
    assert (cmap.canonical["amount"], cmap.amount_product) == ("Sales", None)
    assert cmap.extras == {"unit_price": "UnitPrice"}


def test_names_are_matched_ignoring_case_spaces_and_punctuation():
    cmap = resolve(CUSTOMERS, ["Customer ID", "Signup-Date", "Plan Tier"], {})
    assert cmap.canonical == {"customer_id": "Customer ID", "signup_ts": "Signup-Date"}
    assert cmap.extras == {"plan_tier": "Plan Tier"}


def test_explicit_amount_product_is_reported_as_mapped(tmp_path):
    (tmp_path / "retail.csv").write_text(UCI_CSV)
    cfg = RunConfig(columns=ColumnsConfig(transactions={"amount": "Quantity*UnitPrice"}))
    report, rows = validated(tmp_path / "retail.csv", config=cfg)
    cmap = report.mappings["transactions"]
    assert cmap.amount_product == ("Quantity", "UnitPrice")
    assert "amount" not in cmap.detected
    assert ("amount", "Quantity × UnitPrice", "mapped") in cmap.describe()
    assert [r["amount"] for r in rows] == pytest.approx([6 * 2.55, 6 * 3.39, -2 * 1.85, 32 * 1.69])


def test_explicit_amount_product_still_detects_quantity():
    detected = resolve(TRANSACTIONS, UCI_COLUMNS, {})
    explicit = resolve(TRANSACTIONS, UCI_COLUMNS, {"amount": "Quantity*UnitPrice"})
    assert explicit.canonical == detected.canonical
