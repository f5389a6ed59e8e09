"""Prospects' population, features and labels: events before the cutoff and no purchase before it."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from custseq.config import FeatureConfig
from custseq.features.prospects import build_prospect_features, build_prospect_labels, count_prospects
from custseq.features.rfm import build_daily
from custseq.io.engine import connect
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

WINDOW = Window(cutoff_of(dt.date(2024, 3, 31)), 30)  # cutoff 2024-04-01, labels until 2024-05-01

TX = [
    ("a", "2024-02-01", 10.0),  # a customer: never a prospect
    ("p2", "2024-04-10", 30.0),  # first purchase in the horizon
    ("p2", "2024-04-20", 5.0),
    ("late", "2024-03-01", 1.0),
]
EVENTS = [
    ("a", "2024-03-01", "view"),
    ("p1", "2024-01-05", "view"),  # a prospect who does not buy
    ("p1", "2024-03-25", "support"),
    ("p2", "2024-03-20", "view"),  # a prospect who buys in the horizon
    ("p2", "2024-03-30", "view"),
    ("p3", "2024-04-02", "view"),  # first seen after the cutoff: not a prospect yet
]


def _tables(con, tx_rows=TX, event_rows=EVENTS):
    tx = pd.DataFrame(tx_rows, columns=["customer_id", "ts", "amount"]).assign(ts=lambda d: pd.to_datetime(d.ts))
    ev = pd.DataFrame(event_rows, columns=["customer_id", "ts", "event"]).assign(ts=lambda d: pd.to_datetime(d.ts))
    t = validate_tables(con, tx, events=ev).tables
    return t["transactions"], t["events"]


def _features(con, tx, ev):
    daily = build_daily(con, tx, WINDOW.cutoff)
    cfg = FeatureConfig(max_event_types=2)
    return build_prospect_features(con, tx, ev, WINDOW, cfg, daily, event_types=("view", "support"))


def test_prospects_are_people_with_events_and_no_purchase_before_the_cutoff():
    con = connect()
    tx, ev = _tables(con)
    f = _features(con, tx, ev).to_pandas().set_index("customer_id")
    assert list(f.index) == ["p1", "p2"] and count_prospects(con, tx, ev, WINDOW) == 2
    p1, p2 = f.loc["p1"], f.loc["p2"]
    assert (p1["n_events"], p1["event_view_n"], p1["event_support_n"]) == (2, 1, 1)
    assert (p2["n_events"], p2["n_events_last_30d"], p2["days_since_last_event"]) == (2, 2, 1.0)
    assert p2["events_since_last_purchase"] == 2  # no purchase yet: every event counts


def test_their_label_is_a_first_purchase_in_the_horizon():
    con = connect()
    tx, ev = _tables(con)
    labels = build_prospect_labels(con, tx, ev, WINDOW).to_pandas().set_index("customer_id")
    assert list(labels.index) == ["p1", "p2"]
    assert bool(labels.loc["p1", "churned"]) and not bool(labels.loc["p2", "churned"])
    assert labels.loc["p2", "value"] == 35.0 and labels.loc["p2", "purchases"] == 2


def test_rows_at_or_after_the_cutoff_do_not_move_the_features():
    con = connect()
    before = _features(con, *_tables(con)).to_pandas()
    later_tx = [*TX, ("p1", "2024-04-01", 99.0), ("a", "2024-04-03", 5.0)]  # at the cutoff and after
    later_ev = [*EVENTS, ("p1", "2024-04-01", "view"), ("p2", "2024-06-01", "support"), ("zz", "2024-04-05", "x")]
    con2 = connect()
    after = _features(con2, *_tables(con2, later_tx, later_ev)).to_pandas()
    pd.testing.assert_frame_equal(before, after)
