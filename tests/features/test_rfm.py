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
from custseq.features.rfm import BTYD_COLUMNS, build_btyd_summary, build_features
from custseq.io.engine import connect
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

CDNOW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cdnow" / "CDNOW_master.txt"

# Tiny example: as-of 2024-03-31 (cutoff 2024-04-01), horizon 30 days.
WINDOW = Window(cutoff_of(dt.date(2024, 3, 31)), 30)

TX = [  # customer, ts, amount, is_refund, product, channel
    ("a", "2024-01-10 10:00", 100.0, False, "p1", "web"),
    ("a", "2024-01-10 15:00", 20.0, False, "p2", "web"),  # same day: one purchase day worth 120
    ("a", "2024-02-09 09:00", 50.0, False, "p1", "store"),
    ("a", "2024-02-15 12:00", 30.0, True, "p1", "store"),  # a refund day is not a purchase day
    ("a", "2024-03-20 18:00", 40.0, False, "p3", "web"),
    ("a", "2024-04-05 10:00", 999.0, False, "p9", "app"),  # after the cutoff: ignored
    ("b", "2024-03-31 23:59", 10.0, False, "p1", "app"),  # on the as-of day itself
    ("c", "2024-04-01 00:00", 70.0, False, "p1", "web"),  # exactly at the cutoff: not a customer yet
]

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
    tx = pd.DataFrame(TX, columns=["customer_id", "ts", "amount", "is_refund", "product", "channel"])
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
    a = tiny.loc["a"]
    # Last H = 30 days: (03-01, 03-31] holds 03-20; previous H: (01-31, 03-01] holds 02-09 and the refund.
    assert (a["purchase_days_last_h"], a["purchase_days_prev_h"], a["purchase_trend_h"]) == (1, 1, 0)
    assert a["spend_last_h"] == pytest.approx(40.0)
    assert a["spend_prev_h"] == pytest.approx(50.0 - 30.0)
    assert a["spend_trend_h"] == pytest.approx(math.log(41.0) - math.log(21.0))
    # 90 and 180 days from the configured (30, 90, 180); 30 is the horizon and has its *_last_h columns.
    assert "purchase_days_last_30d" not in tiny.columns
    assert (a["purchase_days_last_90d"], a["spend_last_90d"]) == (3, pytest.approx(180.0))
    assert (a["purchase_days_last_180d"], a["spend_last_180d"]) == (3, pytest.approx(180.0))


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


def test_recent_windows_equal_to_horizon_only():
    con = connect()
    tx = pd.DataFrame(TX, columns=["customer_id", "ts", "amount", "is_refund", "product", "channel"])
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
