"""Labels of a window: churned = no purchase in [cutoff, cutoff + H); value = net amount (or margin) in it."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from custseq.config import FeatureConfig
from custseq.features.rfm import build_features
from custseq.io.engine import connect
from custseq.labels import build_labels
from custseq.validate.tables import validate_tables
from custseq.windows import Window, cutoff_of

# as-of 2024-02-29 (inclusive): cutoff 2024-03-01 00:00, horizon 10 days: labels from [03-01, 03-11).
WINDOW = Window(cutoff_of(dt.date(2024, 2, 29)), 10)

# (customer, timestamp, amount, is_refund, cost)
ROWS = [
    ("a", "2024-02-01 09:00", 10.0, False, 6.0),
    ("a", "2024-03-01 00:00:00", 30.0, False, 18.0),  # exactly at the cutoff: future
    ("b", "2024-02-02 10:00", 15.0, False, 9.0),
    ("b", "2024-03-11 00:00:00", 99.0, False, 50.0),  # exactly at cutoff + H: outside the horizon
    ("c", "2024-02-03 11:00", 20.0, False, 12.0),
    ("c", "2024-03-05 12:00", 50.0, False, 30.0),
    ("c", "2024-03-07 13:00", 20.0, True, 12.0),  # refund flagged with a positive amount: netted
    ("d", "2024-02-04 14:00", 25.0, False, 15.0),
    ("d", "2024-03-06 15:00", 10.0, True, 6.0),  # only a refund in the horizon: churned
    ("e", "2024-03-02 16:00", 40.0, False, 24.0),  # no history before the cutoff: not a customer yet
    ("f", "2024-02-29 23:59:59", 5.0, False, 3.0),  # last second before the cutoff: history, no future
    ("g", "2024-01-10 08:00", 8.0, False, 4.0),
    ("g", "2024-03-02 08:00", 10.0, False, 5.0),
    ("g", "2024-03-02 18:00", 12.0, False, 6.0),  # same day: one purchase day
    ("g", "2024-03-10 23:59:59", 3.0, False, 1.0),  # last second of the horizon
    ("h", "2024-02-05 07:00", 7.0, False, 4.0),
    ("h", "2024-03-03 07:00", -5.0, False, -2.0),  # negative amount: a refund
    ("h", "2024-03-04 07:00", 12.0, False, 7.0),
]

# customer: (churned, purchase days, net amount, net margin)
EXPECTED = {
    "a": (False, 1, 30.0, 12.0),
    "b": (True, 0, 0.0, 0.0),
    "c": (False, 1, 50.0 - 20.0, (50.0 - 30.0) - (20.0 - 12.0)),
    "d": (True, 0, 0.0, 0.0),
    "f": (True, 0, 0.0, 0.0),
    "g": (False, 2, 10.0 + 12.0 + 3.0, 5.0 + 6.0 + 2.0),
    "h": (False, 1, -5.0 + 12.0, (-5.0 + 2.0) + (12.0 - 7.0)),
}


def frame(with_cost: bool) -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=["customer_id", "ts", "amount", "is_refund", "cost"])
    df["ts"] = pd.to_datetime(df["ts"], format="ISO8601")
    return df if with_cost else df.drop(columns="cost")


def labels_of(df: pd.DataFrame, window: Window = WINDOW) -> pd.DataFrame:
    con = connect()
    tx = validate_tables(con, df).tables["transactions"]
    return build_labels(con, tx, window).to_pandas().set_index("customer_id")


def test_hand_computed_labels():
    got = labels_of(frame(with_cost=False))
    assert list(got.index) == sorted(EXPECTED)  # "e" has no history; one row per customer, sorted
    assert (got["cutoff"] == pd.Timestamp("2024-03-01")).all()
    for cid, (churned, purchases, value, _margin) in EXPECTED.items():
        assert bool(got.at[cid, "churned"]) is churned, cid
        assert got.at[cid, "purchases"] == purchases, cid
        assert got.at[cid, "value"] == pytest.approx(value, abs=1e-12), cid


def test_value_is_margin_when_cost_is_mapped():
    got = labels_of(frame(with_cost=True))
    assert got["value"].to_dict() == pytest.approx({cid: e[3] for cid, e in EXPECTED.items()}, abs=1e-12)
    assert got["churned"].to_dict() == {cid: e[0] for cid, e in EXPECTED.items()}


def test_churners_have_zero_value():
    got = labels_of(frame(with_cost=False))
    assert (got.loc[got["churned"], "value"] == 0.0).all()
    assert got["churned"].sum() == 3  # b, d, f


def test_boundaries_move_with_the_window():
    got = labels_of(frame(with_cost=False), Window(cutoff_of(dt.date(2024, 2, 29)), 11))
    assert not got.at["b", "churned"]  # with H = 11 the row at 2024-03-11 00:00 is inside [c, c + 11 d)
    assert got.at["b", "value"] == 99.0
    # A cutoff one second later: the row at 2024-03-01 00:00:00 becomes history.
    later = labels_of(frame(with_cost=False), Window(dt.datetime(2024, 3, 1, 0, 0, 1), 10))
    assert later.at["a", "churned"]  # the cutoff row is now history, and nothing follows it


def test_customers_are_those_with_history_like_features():
    con = connect()
    tx = validate_tables(con, frame(with_cost=True)).tables["transactions"]
    for as_of in (dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 5)):
        window = Window(cutoff_of(as_of), 10)
        labels = build_labels(con, tx, window).column("customer_id").to_pylist()
        features = build_features(con, tx, window, FeatureConfig()).column("customer_id").to_pylist()
        before = sorted({r[0] for r in ROWS if pd.Timestamp(r[1]) < window.cutoff})
        assert labels == features == before
