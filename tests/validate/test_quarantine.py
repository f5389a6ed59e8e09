"""Quarantine: rejected rows are written with rule and reason, counted, and never silently dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import custseq
from custseq.config import RunConfig, ValidationConfig
from custseq.errors import EmptyTableError, QuarantineError
from custseq.io.engine import connect
from custseq.validate.quarantine import check_row_accounting
from custseq.validate.tables import validate_tables

DIRTY = Path(__file__).parent / "dirty_transactions.csv"
DIRTY_CONFIG = RunConfig(validation=ValidationConfig(max_abs_amount=1e6, future_rows="quarantine"))
DIRTY_QUARANTINED = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 23, 24, 25, 26, 27, 28]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def clean_ids(data, table: str = "transactions", **kwargs) -> tuple[object, list[int]]:
    con = connect()
    try:
        report = validate_tables(con, data, **kwargs)
        ids = [r[0] for r in con.sql(f"SELECT row_id FROM clean_{table} ORDER BY row_id").fetchall()]
        return report, ids
    finally:
        con.close()


# --- the quarantine file ------------------------------------------------------------------------------------------


def test_quarantine_file_holds_one_row_per_quarantined_row_with_the_original_values(tmp_path):
    report = custseq.validate_tables(DIRTY, as_of="2011-12-31", config=DIRTY_CONFIG, quarantine_dir=tmp_path / "q")
    table = report.tables["transactions"]
    q = pq.read_table(tmp_path / "q" / "transactions.parquet")
    assert q.column_names == [
        "row_number",
        "rule",
        "reason",
        "customer_id",
        "ts",
        "amount",
        "quantity",
        "currency",
        "order_id",
        "cost",
        "is_refund",
    ]
    assert q.num_rows == table.rows_quarantined
    assert q.column("row_number").to_pylist() == DIRTY_QUARANTINED
    by_row = {r["row_number"]: r for r in q.to_pylist()}
    assert {n: by_row[n]["rule"] for n in (6, 8, 13, 17)} == {
        6: "unparsable_ts",
        8: "unparsable_amount",
        13: "non_finite_amount",
        17: "unknown_currency",
    }
    # the original text, not a parsed value
    assert (by_row[6]["ts"], by_row[8]["amount"], by_row[9]["quantity"], by_row[11]["is_refund"]) == (
        "2011-13-45 09:00:00",
        "5x",
        "two",
        "maybe",
    )
    assert by_row[15]["amount"] == "-2e6"
    # the reason is the rule's reason
    assert all(r["reason"] == table.reasons[r["rule"]] for r in by_row.values())
    # counted per rule exactly as in the report
    rules = q.column("rule").to_pylist()
    assert {rule: rules.count(rule) for rule in set(rules)} == table.rule_counts


def test_no_quarantine_file_is_written_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    custseq.validate_tables(DIRTY, config=DIRTY_CONFIG)
    assert list(tmp_path.iterdir()) == []


def test_stale_quarantine_file_is_removed_when_a_rerun_quarantines_nothing(tmp_path):
    folder = tmp_path / "q"
    dirty = write(tmp_path / "dirty.csv", "customer_id,ts,amount\nA,2011-01-01,1\n,2011-01-02,2\n")
    custseq.validate_tables(dirty, quarantine_dir=folder)
    assert (folder / "transactions.parquet").exists()
    clean = write(tmp_path / "clean.csv", "customer_id,ts,amount\nA,2011-01-01,1\n")
    custseq.validate_tables(clean, quarantine_dir=folder)
    assert not (folder / "transactions.parquet").exists()


# --- duplicates ---------------------------------------------------------------------------------------------------

DATE_ONLY_DUPS = "customer_id,ts,amount\nA,2011-01-01,5\nA,2011-01-01,5\nA,2011-01-01,5\nB,2011-01-02,7\n"
TIMED_DUPS = "customer_id,ts,amount\nA,2011-01-01 10:00,5\nA,2011-01-01 10:00,5\nA,2011-01-01 10:01,5\n"
ORDER_DUPS = "customer_id,ts,amount,order_id\nA,2011-01-01,5,O1\nA,2011-01-01,5,O1\nA,2011-01-01,5,O2\n"
KEPT_NOTE = (
    "transactions: 2 exact duplicate rows kept (dates without a time and no order id: identical rows can be "
    "separate purchases on one day); set validation.duplicates = 'quarantine' to remove them"
)
MIXED_DUPS = "customer_id,ts,amount\nA,2011-01-01,5\nA,2011-01-01,5\nB,2011-01-02 10:00,7\nB,2011-01-02 10:00,7\n"


def test_auto_decides_duplicates_per_row_not_per_table(tmp_path):
    # A timed duplicate elsewhere in the table (e.g. a future row) must not change what happens to dated ones.
    report, ids = clean_ids(write(tmp_path / "tx.csv", MIXED_DUPS))
    assert ids == [1, 2, 3]
    assert report.tables["transactions"].rule_counts == {"duplicate_row": 1}
    assert any(n.startswith("transactions: 1 exact duplicate rows kept") for n in report.tables["transactions"].notes)


def test_auto_keeps_date_only_duplicates_without_order_id_and_says_so(tmp_path):
    report, ids = clean_ids(write(tmp_path / "tx.csv", DATE_ONLY_DUPS))
    table = report.tables["transactions"]
    assert ids == [1, 2, 3, 4]
    assert table.rule_counts == {}
    assert KEPT_NOTE in table.notes


def test_quarantine_policy_removes_date_only_duplicates(tmp_path):
    cfg = RunConfig(validation=ValidationConfig(duplicates="quarantine"))
    report, ids = clean_ids(write(tmp_path / "tx.csv", DATE_ONLY_DUPS), config=cfg)
    table = report.tables["transactions"]
    assert ids == [1, 4]  # the first of the identical rows stays
    assert table.rule_counts == {"duplicate_row": 2}
    assert KEPT_NOTE not in table.notes


@pytest.mark.parametrize("text", [TIMED_DUPS, ORDER_DUPS], ids=["time of day", "order id"])
def test_auto_quarantines_duplicates_when_rows_can_be_told_apart(tmp_path, text):
    report, ids = clean_ids(write(tmp_path / "tx.csv", text))
    table = report.tables["transactions"]
    assert ids == [1, 3]
    assert table.rule_counts == {"duplicate_row": 1}
    assert KEPT_NOTE not in table.notes


def test_keep_policy_keeps_timed_duplicates_without_the_auto_note(tmp_path):
    cfg = RunConfig(validation=ValidationConfig(duplicates="keep"))
    report, ids = clean_ids(write(tmp_path / "tx.csv", TIMED_DUPS), config=cfg)
    assert ids == [1, 2, 3]
    assert KEPT_NOTE not in report.tables["transactions"].notes


# --- customers and events -----------------------------------------------------------------------------------------

TX = "customer_id,ts,amount\nC1,2011-01-01,1\nC2,2011-01-02,2\n"


def test_duplicate_customer_ids_keep_the_first_row(tmp_path):
    customers = write(
        tmp_path / "customers.csv",
        "customer_id,signup_ts\nC1,2010-01-01\nC2,2010-02-01\nC1,2010-03-01\nC2,2010-04-01\nC1,2010-05-01\n",
    )
    report, ids = clean_ids(
        write(tmp_path / "tx.csv", TX), "customers", customers=customers, quarantine_dir=tmp_path / "q"
    )
    table = report.tables["customers"]
    assert ids == [1, 2]
    assert table.rule_counts == {"duplicate_customer_id": 3}
    q = pq.read_table(tmp_path / "q" / "customers.parquet")
    assert q.select(["row_number", "rule", "customer_id", "signup_ts"]).to_pylist() == [
        {"row_number": 3, "rule": "duplicate_customer_id", "customer_id": "C1", "signup_ts": "2010-03-01"},
        {"row_number": 4, "rule": "duplicate_customer_id", "customer_id": "C2", "signup_ts": "2010-04-01"},
        {"row_number": 5, "rule": "duplicate_customer_id", "customer_id": "C1", "signup_ts": "2010-05-01"},
    ]


def test_a_customer_whose_first_row_is_broken_keeps_its_next_valid_row(tmp_path):
    customers = write(tmp_path / "customers.csv", "customer_id,signup_ts\nC1,garbage\nC1,2010-01-01\nC2,2010-02-01\n")
    report, ids = clean_ids(write(tmp_path / "tx.csv", TX), "customers", customers=customers)
    assert ids == [2, 3]
    assert report.tables["customers"].rule_counts == {"unparsable_signup_ts": 1}


EVENTS = (
    "customer_id,ts,event\n"
    "C1,2011-01-01 10:00,login\n"  # ok
    "C9,2011-01-01 11:00,login\n"  # kept, flagged: C9 has no transaction
    "C1,2011-01-01 12:00,\n"  # missing_event
    "C9,2011-01-02 12:00,  \n"  # missing_event wins over the flag
    ",2011-01-02 13:00,view\n"  # missing_customer_id
    "C2,2011-01-03 09:00,view\n"  # ok
    "C8,2011-01-03 09:30,view\n"  # kept, flagged
)


def test_events_missing_event_is_quarantined_and_events_without_transactions_are_flagged(tmp_path):
    folder = tmp_path / "q"
    report, ids = clean_ids(
        write(tmp_path / "tx.csv", TX), "events", events=write(tmp_path / "ev.csv", EVENTS), quarantine_dir=folder
    )
    table = report.tables["events"]
    assert ids == [1, 2, 6, 7]
    assert table.rule_counts == {"missing_event": 2, "missing_customer_id": 1}
    assert table.flag_counts == {"event_without_transactions": 2}
    assert (table.rows_in, table.rows_used, table.rows_quarantined) == (7, 4, 3)
    quarantined = pq.read_table(folder / "events.parquet")
    assert quarantined.select(["row_number", "rule"]).to_pylist() == [
        {"row_number": 3, "rule": "missing_event"},
        {"row_number": 4, "rule": "missing_event"},
        {"row_number": 5, "rule": "missing_customer_id"},
    ]
    flagged = pq.read_table(folder / "events.flagged.parquet")
    assert flagged.select(["row_number", "rule", "reason", "customer_id"]).to_pylist() == [
        {
            "row_number": 2,
            "rule": "event_without_transactions",
            "reason": "customer has no valid transaction; the event is kept",
            "customer_id": "C9",
        },
        {
            "row_number": 7,
            "rule": "event_without_transactions",
            "reason": "customer has no valid transaction; the event is kept",
            "customer_id": "C8",
        },
    ]


def test_events_of_customers_whose_transactions_were_quarantined_are_flagged(tmp_path):
    tx = write(tmp_path / "tx.csv", "customer_id,ts,amount\nC1,2011-01-01,1\nC2,2011-01-02,oops\n")
    ev = write(tmp_path / "ev.csv", "customer_id,ts,event\nC1,2011-01-01 10:00,login\nC2,2011-01-01 11:00,login\n")
    report = custseq.validate_tables(tx, events=ev)
    assert report.tables["transactions"].rule_counts == {"unparsable_amount": 1}
    assert report.tables["events"].flag_counts == {"event_without_transactions": 1}


# --- nothing survives, and the accounting check -------------------------------------------------------------------


def test_no_surviving_row_names_the_most_common_rule(tmp_path):
    tx = write(tmp_path / "tx.csv", "customer_id,ts,amount\n,2011-01-01,1\n,2011-01-02,2\nC1,,3\n")
    with pytest.raises(
        EmptyTableError,
        match=re.escape(
            "no transactions row passed validation; 2 of 3 broke rule 'missing_customer_id' (customer id is empty); "
            "check the column mapping and formats"
        ),
    ):
        custseq.validate_tables(tx, quarantine_dir=tmp_path / "q")
    # the rows that sank the table are still written for inspection
    assert pq.read_table(tmp_path / "q" / "transactions.parquet").num_rows == 3


def test_row_accounting_passes_when_rows_balance():
    assert check_row_accounting("transactions", rows_in=10, rows_used=7, rows_quarantined=3) is None


@pytest.mark.parametrize("used, quarantined", [(7, 2), (8, 3)])
def test_row_accounting_mismatch_is_a_quarantine_error(used, quarantined):
    with pytest.raises(
        QuarantineError,
        match=re.escape(
            f"transactions: 10 rows in but {used} used + {quarantined} quarantined; rows were lost — please report"
        ),
    ):
        check_row_accounting("transactions", rows_in=10, rows_used=used, rows_quarantined=quarantined)
