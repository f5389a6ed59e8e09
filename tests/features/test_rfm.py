"""RFM and behaviour features: lifetimes as an oracle on CDNOW, and hand-computed values on a tiny example."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custseq.config import FeatureConfig
from custseq.datasets import load_cdnow
from custseq.errors import ConfigError
from custseq.features.rfm import BTYD_COLUMNS, build_btyd_summary, build_features, event_column_names
from custseq.io.engine import connect
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

CDNOW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cdnow" / "CDNOW_master.txt"

# Tiny example: as-of 2024-03-31 (cutoff 2024-04-01), horizon 30 days.
WINDOW = Window(cutoff_of(dt.date(2024, 3, 31)), 30)

TX = [  # customer, ts, amount, is_refund, product, channel, order_id, category, quantity
    ("a", "2024-01-10 10:00", 100.0, False, "p1", "web", "o1", "music", 1),
    ("a", "2024-01-10 15:00", 20.0, False, "p2", "web", "o2", "books", 2),  # same day: one purchase day worth 120
    ("a", "2024-02-09 09:00", 50.0, False, "p1", "store", "o3", "music", 1),
    ("a", "2024-02-15 12:00", 30.0, True, "p1", "store", "o4", "music", 1),  # a refund day is not a purchase day
    ("a", "2024-03-20 18:00", 40.0, False, "p3", "web", "o5", "books", 1),
    ("a", "2024-04-05 10:00", 999.0, False, "p9", "app", "o6", "games", 5),  # after the cutoff: ignored
    ("b", "2024-03-31 23:59", 10.0, False, "p1", "app", "o7", "music", 3),  # on the as-of day itself
    ("c", "2024-04-01 00:00", 70.0, False, "p1", "web", "o8", "music", 1),  # exactly at the cutoff: not a customer yet
]
TX_COLUMNS = ["customer_id", "ts", "amount", "is_refund", "product", "channel", "order_id", "category", "quantity"]

CUSTOMERS = [  # customer, signup_ts, country, age
    ("a", "2024-01-01 00:00", "DE", 41.0),
    ("b", "2024-04-10 00:00", "FR", 29.0),  # signs up after the cutoff: unknown at the cutoff
    ("c", "2023-12-01 00:00", "US", 35.0),
    # Profiles without transactions: never in the features, but they make country a category
    # (3 distinct values in 8 rows, not an id-like text column).
    *((cid, "2023-11-01 00:00", country, 50.0) for cid, country in zip("defgh", ["DE", "FR"] * 3, strict=False)),
]

EVENTS = [
    ("a", "2024-01-05 10:00", "login"),
    ("a", "2024-03-15 10:00", "view"),
    ("a", "2024-03-30 10:00", "view"),
    ("a", "2024-04-02 10:00", "support"),  # after the cutoff: ignored
]


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    con = connect()
    tx = pd.DataFrame(TX, columns=TX_COLUMNS)
    customers = pd.DataFrame(CUSTOMERS, columns=["customer_id", "signup_ts", "country", "age"])
    events = pd.DataFrame(EVENTS, columns=["customer_id", "ts", "event"])
    for df, col in ((tx, "ts"), (customers, "signup_ts"), (events, "ts")):
        df[col] = pd.to_datetime(df[col])
    tables = validate_tables(con, tx, customers=customers, events=events).tables
    table = build_features(
        con, tables["transactions"], WINDOW, FeatureConfig(), customers=tables["customers"], events=tables["events"]
    )
    return table.to_pandas().set_index("customer_id")


def test_only_customers_with_history(tiny):
    assert list(tiny.index) == ["a", "b"]
    assert (tiny["cutoff"] == pd.Timestamp("2024-04-01")).all()


def test_btyd_columns_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Purchase days 01-10, 02-09, 03-20; as-of 03-31 (2024 is a leap year).
    assert (a["frequency"], a["recency"], a["T"]) == (2.0, 70.0, 81.0)
    assert a["monetary_value"] == pytest.approx((50.0 + 40.0) / 2)  # repeat days only, first day excluded
    assert a["tenure_days"] == 81.0
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0.0, 0.0, 0.0, 0.0)


def test_row_features_by_hand(tiny):
    a = tiny.loc["a"]
    assert a["n_transactions"] == 5
    assert a["total_spend"] == pytest.approx(100 + 20 + 50 - 30 + 40)
    assert a["gross_spend"] == pytest.approx(210.0)
    assert a["refund_amount"] == pytest.approx(30.0)
    assert a["refund_rate"] == pytest.approx(1 / 5)
    assert a["avg_purchase_amount"] == pytest.approx((100 + 20 + 50 + 40) / 4)
    assert a["max_amount"] == 100.0
    assert a["n_distinct_product"] == 3
    assert a["n_distinct_channel"] == 2


def test_timing_features_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    assert a["days_since_last_purchase"] == 11.0
    assert b["days_since_last_purchase"] == 0.0
    # Gaps between purchase days: 30 and 40.
    assert a["ipt_mean"] == 35.0
    assert a["ipt_std"] == pytest.approx(math.sqrt(50.0))
    assert (a["ipt_max"], a["ipt_last"]) == (40.0, 40.0)
    assert pd.isna(b["ipt_mean"]) and pd.isna(b["ipt_last"])  # one purchase: no gap
    assert a["spend_per_30d"] == pytest.approx(180.0 * 30 / (81 + 1))
    assert b["spend_per_30d"] == pytest.approx(10.0 * 30 / 1)


def test_recent_windows_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Last H = 30 days: (03-01, 03-31] holds 03-20; previous H: (01-31, 03-01] holds 02-09 and the refund.
    assert (a["purchase_days_last_h"], a["purchase_days_prev_h"], a["purchase_trend_h"]) == (1, 1, 0)
    assert a["spend_last_h"] == pytest.approx(40.0)
    assert a["spend_prev_h"] == pytest.approx(50.0 - 30.0)
    assert a["transactions_last_h"] == 1
    assert a["spend_trend_h"] == pytest.approx(math.log(41.0) - math.log(21.0))
    # 7, 90, 180 and 365 days from the default (7, 30, 90, 180, 365); 30 is the horizon and has its *_last_h columns.
    assert "purchase_days_last_30d" not in tiny.columns and "purchase_trend_30d" not in tiny.columns
    # Last 7 days (03-24, 03-31]: nothing for a; 03-31 for b.
    assert (a["purchase_days_last_7d"], a["spend_last_7d"], a["transactions_last_7d"]) == (0, 0.0, 0)
    assert (b["purchase_days_last_7d"], b["spend_last_7d"], b["transactions_last_7d"]) == (1, 10.0, 1)
    # 90 days and more hold all 5 rows of a: 3 purchase days, net 180.
    for d in (90, 180, 365):
        assert (a[f"purchase_days_last_{d}d"], a[f"transactions_last_{d}d"]) == (3, 5)
        assert a[f"spend_last_{d}d"] == pytest.approx(180.0)


def test_trends_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # 7 days: last (03-24, 03-31] is empty for a, the 7 days before (03-17, 03-24] hold 03-20 (40).
    assert a["purchase_trend_7d"] == -1
    assert a["spend_trend_7d"] == pytest.approx(math.log(1.0) - math.log(41.0))
    assert (b["purchase_trend_7d"], b["spend_trend_7d"]) == (1, pytest.approx(math.log(11.0)))
    # 90 days and more: everything in the last period, nothing before it.
    for d in (90, 180, 365):
        assert (a[f"purchase_trend_{d}d"], a[f"spend_trend_{d}d"]) == (3, pytest.approx(math.log(181.0)))


def test_regularity_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Gaps 30 and 40: median 35, mean of the last (up to) 3 gaps 35, cv = sqrt(50) / 35; silent 11 days.
    assert (a["ipt_median"], a["ipt_recent_mean"]) == (35.0, 35.0)
    assert a["ipt_cv"] == pytest.approx(math.sqrt(50.0) / 35.0)
    assert a["overdue_ratio"] == pytest.approx(11.0 / 35.0)
    assert b[["ipt_median", "ipt_recent_mean", "ipt_cv", "overdue_ratio"]].isna().all()  # one purchase day


def test_calendar_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Purchase days of a: Wed 01-10, Fri 02-09, Wed 03-20 (the refund day 02-15 is not one).
    assert a["weekday_modal_share"] == pytest.approx(2 / 3)
    assert a["weekday_entropy"] == pytest.approx((2 * math.log(3 / 2) + math.log(3)) / 3)
    # Purchase lines of a at 10, 15, 9 and 18 h (the refund at 12 h is not one): four hours once each.
    assert (a["hour_modal_share"], a["hour_entropy"]) == (0.25, pytest.approx(math.log(4)))
    assert (b["weekday_modal_share"], b["weekday_entropy"], b["hour_modal_share"], b["hour_entropy"]) == (1, 0, 1, 0)


def test_spend_spread_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Net spend of a's purchase days: 120, 50, 40; mean 70, squared deviations 2500 + 400 + 900 = 3800 over 2.
    assert a["spend_std_per_day"] == pytest.approx(math.sqrt(1900.0))
    assert a["spend_cv"] == pytest.approx(math.sqrt(1900.0) / 70.0)
    assert (a["spend_recent_mean"], a["max_day_spend"]) == (pytest.approx(70.0), 120.0)
    assert pd.isna(b["spend_std_per_day"]) and pd.isna(b["spend_cv"])
    assert (b["spend_recent_mean"], b["max_day_spend"]) == (10.0, 10.0)


def test_baskets_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Orders with purchase lines: o1 100, o2 20 (same day, another order), o3 50, o5 40; o4 is only a refund.
    # Mean 52.5; squared deviations 47.5² + 32.5² + 2.5² + 12.5² = 3475 over 3. Quantities 1 + 2 + 1 + 1.
    assert a["n_orders"] == 5
    assert a["basket_mean_amount"] == pytest.approx(52.5)
    assert a["basket_std_amount"] == pytest.approx(math.sqrt(3475 / 3))
    assert (a["basket_mean_lines"], a["basket_mean_quantity"]) == (1.0, pytest.approx(5 / 4))
    assert (b["basket_mean_amount"], b["basket_mean_lines"], b["basket_mean_quantity"]) == (10.0, 1.0, 3.0)
    assert pd.isna(b["basket_std_amount"])


def test_baskets_are_purchase_days_without_order_id():
    con = connect()
    tx = pd.DataFrame(TX, columns=TX_COLUMNS).drop(columns="order_id")
    tx["ts"] = pd.to_datetime(tx["ts"])
    table = build_features(con, validate_tables(con, tx).tables["transactions"], WINDOW, FeatureConfig())
    a = table.to_pandas().set_index("customer_id").loc["a"]
    # Purchase days 120 (2 lines, quantity 3), 50, 40: as the spend spread, 4 lines and quantity 5 over 3 days.
    assert "n_orders" not in table.column_names
    assert a["basket_mean_amount"] == pytest.approx(70.0)
    assert a["basket_std_amount"] == pytest.approx(math.sqrt(1900.0))
    assert (a["basket_mean_lines"], a["basket_mean_quantity"]) == (pytest.approx(4 / 3), pytest.approx(5 / 3))


def test_products_by_hand(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    # Purchase lines of a: 01-10 p1 (music, 100) and p2 (books, 20), 02-09 p1 (music, 50), 03-20 p3 (books, 40).
    # Only the p1 line of 02-09 repeats a product bought on an earlier day; p3 was new on 03-20, 11 days ago.
    assert (a["n_distinct_product"], a["product_repeat_rate"], a["days_since_new_product"]) == (3, 0.25, 11.0)
    # Lines per product 2, 1, 1 of 4: −(½ ln ½ + 2 · ¼ ln ¼) = 1.5 ln 2.
    assert a["product_entropy"] == pytest.approx(1.5 * math.log(2))
    # Categories: music 2 lines worth 150, books 2 lines worth 60 (the refund is no purchase line).
    assert a["n_distinct_category"] == 2
    assert a["favourite_category_share"] == pytest.approx(150 / 210)
    assert a["category_entropy"] == pytest.approx(math.log(2))
    assert (b["product_repeat_rate"], b["days_since_new_product"], b["product_entropy"]) == (0.0, 0.0, 0.0)
    assert (b["n_distinct_category"], b["favourite_category_share"], b["category_entropy"]) == (1, 1.0, 0.0)


def test_a_regular_buyer_gone_quiet_is_overdue():
    as_of = dt.date(2024, 3, 31)
    rows = [("late", as_of - dt.timedelta(days=35 + 7 * i)) for i in range(8)]  # weekly, silent for 5 weeks
    rows += [("due", as_of - dt.timedelta(days=3 + 7 * i)) for i in range(8)]  # weekly, bought 3 days ago
    rows += [("uneven", as_of - dt.timedelta(days=d)) for d in (100, 90, 70, 40, 0)]  # gaps 10, 20, 30, 40
    tx = pd.DataFrame(rows, columns=["customer_id", "ts"]).assign(amount=10.0)
    tx["ts"] = pd.to_datetime(tx["ts"])
    con = connect()
    table = build_features(con, validate_tables(con, tx).tables["transactions"], WINDOW, FeatureConfig())
    f = table.to_pandas().set_index("customer_id")
    assert f.loc["late", "overdue_ratio"] == pytest.approx(35 / 7)
    assert f.loc["due", "overdue_ratio"] == pytest.approx(3 / 7)
    assert f.loc["late", "ipt_cv"] == 0.0
    assert (f.loc["uneven", "ipt_median"], f.loc["uneven", "ipt_recent_mean"]) == (25.0, 30.0)
    # Dates without a time of day: no hour-of-day columns, but the weekday ones.
    assert f["hour_entropy"].isna().all() and f["hour_modal_share"].isna().all()
    assert f.loc["late", "weekday_modal_share"] == 1.0


def test_groups_select_the_columns():
    con = connect()
    tx = pd.DataFrame(TX, columns=TX_COLUMNS)
    tx["ts"] = pd.to_datetime(tx["ts"])
    clean = validate_tables(con, tx).tables["transactions"]
    core = build_features(con, clean, WINDOW, FeatureConfig(groups=())).column_names
    timing = build_features(con, clean, WINDOW, FeatureConfig(groups=("timing",))).column_names
    everything = build_features(con, clean, WINDOW, FeatureConfig()).column_names
    assert {"frequency", "recency", "T", "monetary_value", "n_orders", "purchase_days_last_h", "spend_last_h"} <= set(
        core
    )
    assert "ipt_mean" not in core and "refund_rate" not in core
    added = [c for c in timing if c not in core]
    assert added == [
        "ipt_mean",
        "ipt_std",
        "ipt_max",
        "ipt_last",
        "ipt_median",
        "ipt_recent_mean",
        "ipt_cv",
        "overdue_ratio",
    ]
    assert set(core) < set(timing) < set(everything) and len(everything) == len(set(everything))


def test_an_unknown_group_is_named():
    with pytest.raises(ConfigError, match=r"unknown feature group\(s\) \['prices'\]; known: \['recency', 'trends'"):
        FeatureConfig(groups=("timing", "prices"))


def test_profile_and_events_join(tiny):
    a, b = tiny.loc["a"], tiny.loc["b"]
    assert a["days_since_signup"] == 90.0  # days from the signup day to the as-of day, like T
    assert pd.isna(b["days_since_signup"])  # signup after the cutoff is unknown at the cutoff
    assert (a["profile_country"], a["profile_age"]) == ("DE", 41.0)
    assert (b["profile_country"], b["profile_age"]) == ("FR", 29.0)
    assert (a["n_events"], a["n_events_last_30d"], a["n_distinct_events"]) == (3, 2, 2)
    assert a["days_since_last_event"] == 1.0  # from 03-30 to the as-of day 03-31, like days_since_last_purchase
    assert (b["n_events"], b["n_events_last_30d"], b["n_distinct_events"]) == (0, 0, 0)
    assert pd.isna(b["days_since_last_event"])


def test_counts_per_event_type_and_browsing_since_the_last_purchase():
    con = connect()
    tx = pd.DataFrame(TX, columns=TX_COLUMNS).assign(ts=lambda d: pd.to_datetime(d["ts"]))
    events = pd.DataFrame(EVENTS, columns=["customer_id", "ts", "event"]).assign(ts=lambda d: pd.to_datetime(d["ts"]))
    tables = validate_tables(con, tx, events=events).tables
    cfg = FeatureConfig(groups=("events",), max_event_types=2)
    table = build_features(
        con, tables["transactions"], WINDOW, cfg, events=tables["events"], event_types=("view", "support", "login")
    )
    f = table.to_pandas().set_index("customer_id")
    a, b = f.loc["a"], f.loc["b"]
    # two views before the cutoff, both within the horizon (30 days), one within 30 days of the as-of day
    assert (a["event_view_n"], a["event_view_last_30d"], a["event_view_last_h"]) == (2, 2, 2)
    assert a["days_since_last_event_view"] == 1.0
    assert (a["event_support_n"], a["event_support_last_h"]) == (0, 0)  # only after the cutoff
    assert pd.isna(a["days_since_last_event_support"])
    assert "event_login_n" not in f.columns  # beyond max_event_types: only in the totals
    assert a["events_since_last_purchase"] == 1  # the view of 03-30 came after the last purchase day 03-20
    assert (b["event_view_n"], b["events_since_last_purchase"]) == (0, 0)


def test_event_type_columns_are_unique_identifiers():
    assert event_column_names(["Page View", "page-view", "x" * 80]) == [
        "event_page_view", "event_page_view_2", "event_" + "x" * 34,
    ]  # fmt: skip


def test_recent_windows_equal_to_horizon_only():
    con = connect()
    tx = pd.DataFrame(TX, columns=TX_COLUMNS)
    tx["ts"] = pd.to_datetime(tx["ts"])
    table = build_features(
        con, validate_tables(con, tx).tables["transactions"], WINDOW, FeatureConfig(recent_windows_days=(30,))
    )
    assert table.column("purchase_days_last_h").to_pylist() == [1, 1]


@pytest.mark.skipif(not CDNOW.exists(), reason=f"CDNOW master file not found at {CDNOW}")
@pytest.mark.filterwarnings("ignore:The 'mode.chained_assignment' option is deprecated")  # lifetimes at import
def test_btyd_summary_matches_lifetimes_on_cdnow():
    # Imported here, not at module level: lifetimes sets global pandas and warnings options when imported.
    from lifetimes.utils import summary_data_from_transaction_data

    df = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    oracle = summary_data_from_transaction_data(
        df.assign(date=pd.to_datetime(df["date"], format="%Y%m%d")),
        "customer_id",
        "date",
        monetary_value_col="dollar_value",
        observation_period_end="1997-09-30",
    )
    con = connect()
    tx = validate_tables(con, df).tables["transactions"]
    assert tx.rows_used == tx.rows_in == len(df)  # exact duplicates kept: dates only, no order id
    window = Window(cutoff_of(dt.date(1997, 9, 30)), 90)
    ours = build_features(con, tx, window, FeatureConfig()).to_pandas().set_index("customer_id")
    ours = ours.loc[:, list(BTYD_COLUMNS)]
    assert len(oracle) == 23_570
    assert sorted(ours.index) == sorted(oracle.index)
    ours = ours.loc[oracle.index]
    for col in ("frequency", "recency", "T"):
        assert (ours[col].to_numpy() == oracle[col].to_numpy()).all(), col
    assert ours["monetary_value"].to_numpy() == pytest.approx(oracle["monetary_value"].to_numpy(), rel=1e-9, abs=0)


def test_btyd_summary_equals_the_btyd_columns_of_the_features():
    """The one-pass BTYD summary and the full feature builder agree for every CDNOW customer."""
    con = connect()
    tx = validate_tables(con, load_cdnow()).tables["transactions"]
    window = Window(cutoff_of(dt.date(1997, 9, 30)), 90)
    summary = build_btyd_summary(con, tx, window).to_pandas().set_index("customer_id")
    features = build_features(con, tx, window, FeatureConfig()).to_pandas().set_index("customer_id")
    assert len(summary) == len(features) == 23_570
    for column in BTYD_COLUMNS:
        np.testing.assert_allclose(summary[column], features.loc[summary.index, column], rtol=1e-12, atol=1e-9)
