"""Row rules: which apply to which table, their priority, and a dirty file that breaks every one of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import custseq
from custseq.config import RunConfig, ValidationConfig
from custseq.io.engine import connect
from custseq.schema import Kind
from custseq.validate.parse import Staged
from custseq.validate.rules import duplicate_predicate, rules_for
from custseq.validate.tables import validate_tables

DIRTY = Path(__file__).parent / "dirty_transactions.csv"
DIRTY_CONFIG = RunConfig(validation=ValidationConfig(max_abs_amount=1e6, future_rows="quarantine"))
DIRTY_AS_OF = "2011-12-31"
# The rule each quarantined data row of dirty_transactions.csv (1-based, header excluded) breaks first.
DIRTY_RULES = {
    3: "missing_customer_id",
    4: "missing_customer_id",  # blank id and a bad amount: the first rule wins
    5: "missing_ts",
    6: "unparsable_ts",
    7: "missing_amount",
    8: "unparsable_amount",
    9: "unparsable_quantity",
    10: "unparsable_cost",
    11: "unparsable_is_refund",
    12: "non_finite_amount",  # inf
    13: "non_finite_amount",  # nan
    14: "absurd_amount",
    15: "absurd_amount",  # -2e6: the rule is on |amount|
    16: "unknown_currency",  # XYZ
    17: "unknown_currency",  # empty
    18: "future_ts",  # 2012-01-01 00:00, the first instant after as-of
    20: "duplicate_row",
    21: "duplicate_row",
    23: "missing_customer_id",  # a duplicate of row 3, counted under the rule row 3 broke
    24: "placeholder_customer_id",  # NULL
    25: "unparsable_amount",  # 1_000: numbers are read strictly
    26: "ts_out_of_range",  # 1900, before validation.min_date
    27: "ts_out_of_range",  # 2099, after today: before future_ts, which it breaks too
    28: "ts_far_before_data",  # 1990, two decades before the rest
}
DIRTY_ROWS_IN = 28


def staged(table: str = "transactions", *, kinds: dict[str, Kind], checked=()) -> Staged:
    return Staged(table, f"stg_{table}", f"raw_{table}", kinds, tuple(checked))


BASIC_TX = {"customer_id": Kind.ID, "ts": Kind.TIMESTAMP, "amount": Kind.NUMBER}


# --- rules_for ----------------------------------------------------------------------------------------------------


def test_rules_for_minimal_transactions_in_priority_order():
    rules = rules_for(staged(kinds=BASIC_TX, checked=("ts", "amount")), ValidationConfig())
    assert [r.name for r in rules] == [
        "missing_customer_id",
        "placeholder_customer_id",
        "missing_ts",
        "unparsable_ts",
        "missing_amount",
        "unparsable_amount",
        "ts_out_of_range",
        "ts_far_before_data",
        "non_finite_amount",
        "absurd_amount",
    ]
    assert all(r.action == "quarantine" for r in rules)


def test_typed_columns_that_cannot_fail_get_only_a_missing_rule():
    rules = rules_for(staged(kinds=BASIC_TX, checked=()), ValidationConfig())
    assert [r.name for r in rules][:4] == [
        "missing_customer_id",
        "placeholder_customer_id",
        "missing_ts",
        "missing_amount",
    ]
    assert next(r for r in rules if r.name == "missing_ts").predicate == "ts IS NULL"


def test_optional_rules_appear_only_when_their_column_or_setting_is_there():
    kinds = BASIC_TX | {"quantity": Kind.NUMBER, "currency": Kind.CATEGORY}
    cutoff = dt.datetime(2012, 1, 1)
    s = staged(kinds=kinds, checked=("ts", "amount", "quantity"))
    names = [
        r.name
        for r in rules_for(
            s, ValidationConfig(future_rows="quarantine"), future_cutoff=cutoff, dup_table="dup_transactions"
        )
    ]
    assert names[-4:] == ["absurd_amount", "unknown_currency", "future_ts", "duplicate_row"]
    assert "unparsable_quantity" in names
    # future rows are kept unless configured, and need a cutoff
    assert "future_ts" not in [r.name for r in rules_for(s, ValidationConfig(), future_cutoff=cutoff)]
    assert "future_ts" not in [r.name for r in rules_for(s, ValidationConfig(future_rows="quarantine"))]


def test_rule_parameters_carry_the_configured_values():
    kinds = BASIC_TX | {"currency": Kind.CATEGORY}
    cfg = ValidationConfig(max_abs_amount=500, currencies=("eur", "GBP"), future_rows="quarantine")
    rules = {r.name: r for r in rules_for(staged(kinds=kinds), cfg, future_cutoff=dt.datetime(2012, 1, 1))}
    assert rules["absurd_amount"].params == {"max_abs_amount": 500.0}
    assert rules["absurd_amount"].reason == "|amount| exceeds 500 (validation.max_abs_amount)"
    assert rules["unknown_currency"].params == {"currencies": ["EUR", "GBP"]}
    assert rules["future_ts"].reason == "timestamp is after the as-of date (2011-12-31)"


def test_customers_and_events_have_their_own_rules():
    cust = rules_for(staged("customers", kinds={"customer_id": Kind.ID}), ValidationConfig())
    assert [r.name for r in cust] == ["missing_customer_id", "placeholder_customer_id", "duplicate_customer_id"]
    ev_kinds = {"customer_id": Kind.ID, "ts": Kind.TIMESTAMP, "event": Kind.CATEGORY}
    ev = rules_for(staged("events", kinds=ev_kinds, checked=("ts",)), ValidationConfig())
    assert [(r.name, r.action) for r in ev] == [
        ("missing_customer_id", "quarantine"),
        ("placeholder_customer_id", "quarantine"),
        ("missing_ts", "quarantine"),
        ("unparsable_ts", "quarantine"),
        ("missing_event", "quarantine"),
        ("ts_out_of_range", "quarantine"),
        ("ts_far_before_data", "quarantine"),
        ("event_without_transactions", "flag"),
    ]


ALL_DUPS = "row_id IN (SELECT row_id FROM dup_x)"
TIMED_DUPS_ONLY = ALL_DUPS + " AND ts <> date_trunc('day', ts)"


@pytest.mark.parametrize(
    "policy, table, order_id, predicate",
    [
        ("auto", "transactions", False, TIMED_DUPS_ONLY),  # CDNOW: identical dated rows may be two purchases
        ("auto", "transactions", True, ALL_DUPS),
        ("auto", "events", False, ALL_DUPS),
        ("quarantine", "transactions", False, ALL_DUPS),
        ("keep", "transactions", True, None),
    ],
)
def test_duplicates_policy(policy, table, order_id, predicate):
    kinds = BASIC_TX | ({"order_id": Kind.ID} if order_id else {})
    s = staged(table, kinds=kinds)
    assert duplicate_predicate(s, ValidationConfig(duplicates=policy), "dup_x") == predicate


# --- the dirty file -----------------------------------------------------------------------------------------------


def test_dirty_file_breaks_every_transactions_rule_with_exact_counts():
    report = custseq.validate_tables(DIRTY, as_of=DIRTY_AS_OF, config=DIRTY_CONFIG)
    table = report.tables["transactions"]
    expected: dict[str, int] = {}
    for rule in DIRTY_RULES.values():
        expected[rule] = expected.get(rule, 0) + 1
    assert table.rule_counts == expected
    # every rule that applied to this table was broken at least once
    assert set(table.rule_counts) == set(table.reasons)
    assert (table.rows_in, table.rows_used, table.rows_quarantined) == (DIRTY_ROWS_IN, 4, 24)
    assert table.rows_in == table.rows_used + table.rows_quarantined


def test_dirty_file_clean_rows_are_exactly_the_unbroken_ones():
    con = connect()
    validate_tables(con, DIRTY, config=DIRTY_CONFIG, future_cutoff=dt.datetime(2012, 1, 1))
    rows = con.sql(
        "SELECT row_id, customer_id, ts, amount, cost, is_refund FROM clean_transactions ORDER BY row_id"
    ).fetchall()
    con.close()
    assert [r[0] for r in rows] == sorted(set(range(1, DIRTY_ROWS_IN + 1)) - set(DIRTY_RULES))
    assert rows[:3] == [
        (1, "C001", dt.datetime(2011, 1, 5, 10, 0), 10.0, 4.0, False),
        (2, "C002", dt.datetime(2011, 2, 1, 11, 30), -20.0, -8.0, True),  # refund: amount and cost negated
        (19, "C005", dt.datetime(2011, 12, 31, 23, 59, 59), 5.0, 2.0, False),  # last second of as-of is kept
    ]
    assert (rows[3][0], rows[3][3], rows[3][5]) == (22, -3.5, True)


def test_report_dict_lists_rows_and_reasons_per_rule():
    report = custseq.validate_tables(DIRTY, as_of=DIRTY_AS_OF, config=DIRTY_CONFIG)
    summary = report.accounts()["transactions"].to_json()
    assert (summary["rows_in"], summary["rows_used"], summary["rows_quarantined"]) == (28, 4, 24)
    assert summary["quarantined_by_rule"]["absurd_amount"] == {
        "rows": 2,
        "reason": "|amount| exceeds 1e+06 (validation.max_abs_amount)",
    }
    assert summary["quarantined_by_rule"]["duplicate_row"] == {"rows": 2, "reason": "exact duplicate of an earlier row"}


def test_future_rows_are_kept_by_default():
    cfg = RunConfig(validation=ValidationConfig(max_abs_amount=1e6))
    table = custseq.validate_tables(DIRTY, as_of=DIRTY_AS_OF, config=cfg).tables["transactions"]
    assert "future_ts" not in table.rule_counts
    assert table.rows_used == 5


def test_future_rows_need_an_as_of_date():
    table = custseq.validate_tables(DIRTY, config=DIRTY_CONFIG).tables["transactions"]
    assert "future_ts" not in table.reasons
    assert table.rows_used == 5


def test_absurd_amount_threshold_is_exclusive(tmp_path):
    (tmp_path / "tx.csv").write_text(
        "customer_id,ts,amount\nA,2011-01-01,100\nB,2011-01-01,-100\nC,2011-01-01,100.01\n"
    )
    cfg = RunConfig(validation=ValidationConfig(max_abs_amount=100))
    table = custseq.validate_tables(tmp_path / "tx.csv", config=cfg).tables["transactions"]
    assert (table.rows_used, table.rule_counts) == (2, {"absurd_amount": 1})


def test_configured_currencies_replace_iso_codes(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,currency\nA,2011-01-01,1,eur\nB,2011-01-01,1,GBP\n")
    cfg = RunConfig(validation=ValidationConfig(currencies=("EUR",)))
    table = custseq.validate_tables(tmp_path / "tx.csv", config=cfg).tables["transactions"]
    assert (table.rows_used, table.rule_counts) == (1, {"unknown_currency": 1})
