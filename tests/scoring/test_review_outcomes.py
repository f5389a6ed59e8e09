"""Closing the review loop: past decisions measured against what happened, and who was right."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from custseq.errors import ConfigError
from custseq.io.run_files import ReviewOutcomes
from custseq.scoring.decisions import LABEL_COLUMNS
from custseq.scoring.review_outcomes import (
    MIN_OVERRULED,
    NOT_CALIBRATED,
    compare_sources,
    read_decision_history,
    realised_outcomes,
    recommendation,
    review_outcomes,
)

NEW_AS_OF, DATA_START = dt.date(2023, 2, 1), dt.date(2023, 1, 1)


def _decisions(rows: list[tuple]) -> pd.DataFrame:
    """(as_of, horizon, customer, decision, custseq churn/value, btyd churn/value, reviewed churn/value)."""
    frame = pd.DataFrame(
        [(a, h, c, d, cc, cv, bc, bv, None, None, rc, rv) for a, h, c, d, cc, cv, bc, bv, rc, rv in rows],
        columns=list(LABEL_COLUMNS),
    )
    return frame.assign(as_of=pd.to_datetime(frame["as_of"]), file="decisions.csv")


def _spend(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(ts=lambda f: pd.to_datetime(f["ts"]))


def test_outcomes_are_counted_over_the_label_window_only():
    # as-of 2023-01-10, 10 days: the window is 2023-01-11 … 2023-01-20, both ends included
    history = _decisions([("2023-01-10", 10, c, "custseq", 0.5, 10.0, 0.5, 10.0, 0.5, 10.0) for c in "abcdef"])
    spend = _spend([
        ("a", "2023-01-15", 30.0), ("a", "2023-01-25", 99.0),  # a: bought in the window; the 25th is after it
        ("b", "2023-01-10", 50.0),  # b: bought on the as-of day only, before the window: churned
        ("c", "2023-01-12", -10.0), ("c", "2023-01-18", 40.0),  # c: a refund and a purchase: net 30
        ("d", "2023-01-13", -5.0),  # d: a refund alone is no purchase: churned, value 0 as in the labels
        ("e", "2023-01-11", 7.0), ("e", "2023-01-20", 3.0),  # e: the window's first and last days count
    ])  # fmt: skip  # f: never bought at all: churned
    out = realised_outcomes(history, spend, NEW_AS_OF, DATA_START).set_index("customer_id")
    assert (out["status"] == "measured").all()
    assert out["churned"].to_dict() == {"a": 0.0, "b": 1.0, "c": 0.0, "d": 1.0, "e": 0.0, "f": 1.0}
    assert out["value"].to_dict() == {"a": 30.0, "b": 0.0, "c": 30.0, "d": 0.0, "e": 10.0, "f": 0.0}


def test_windows_not_over_are_pending_and_those_before_the_data_have_no_outcome():
    history = _decisions([
        ("2023-01-10", 22, "a", "btyd", 0.5, 10.0, 0.5, 10.0, 0.5, 10.0),  # ends 2023-02-01 = the new as-of: over
        ("2023-01-10", 23, "b", "btyd", 0.5, 10.0, 0.5, 10.0, 0.5, 10.0),  # ends 2023-02-02: pending
        ("2022-12-01", 10, "c", "btyd", 0.5, 10.0, 0.5, 10.0, 0.5, 10.0),  # 2022-12-02 …: before the data
    ])  # fmt: skip
    spend = _spend([("a", "2023-02-01", 5.0), ("b", "2023-01-20", 5.0), ("c", "2023-01-05", 5.0)])
    out = realised_outcomes(history, spend, NEW_AS_OF, DATA_START).set_index("customer_id")
    assert out["status"].to_dict() == {"a": "measured", "b": "pending", "c": "before data"}
    assert out.loc["a", "churned"] == 0.0 and out.loc["a", "value"] == 5.0
    assert out.loc[["b", "c"], ["churned", "value"]].isna().all().all()  # no outcome claimed


def test_each_source_is_scored_on_the_measured_customers():
    history = _decisions([
        # customer, decision, custseq, BG/NBD, reviewed (the numbers the decision kept)
        ("2023-01-10", 10, "a", "btyd", 0.2, 10.0, 0.9, 0.0, 0.9, 0.0),  # churned: the reviewers took BG/NBD's
        ("2023-01-10", 10, "b", "custseq", 0.4, 10.0, 0.9, 50.0, 0.4, 10.0),  # bought 30: kept custseq's
        ("2023-01-25", 30, "c", "override", 0.1, 5.0, 0.2, 1.0, 0.99, 5.0),  # pending: not scored
    ])  # fmt: skip
    spend = _spend([("b", "2023-01-14", 30.0)])
    record = review_outcomes(history, spend, NEW_AS_OF, DATA_START)
    assert record is not None
    assert (record.decisions, record.measured, record.pending, record.before_data) == (3, 2, 1, 0)
    assert record.by_decision == {"custseq": 1, "btyd": 1, "override": 0}
    # Brier by hand: custseq ((0.2 − 1)² + 0.4²) / 2 = 0.40; BG/NBD (0.1² + 0.9²) / 2 = 0.41; reviewers 0.085
    assert record.errors["custseq"].churn_brier == pytest.approx(0.40)
    assert record.errors["btyd"].churn_brier == pytest.approx(0.41)
    assert record.errors["reviewers"].churn_brier == pytest.approx(0.085)
    # |value − outcome| (0, 30): custseq (10 + 20) / 2 = 15; BG/NBD (0 + 20) / 2 = 10; reviewers (0 + 20) / 2
    assert record.errors["custseq"].value_mae == pytest.approx(15.0)
    assert record.errors["btyd"].value_mae == pytest.approx(10.0)
    assert record.errors["reviewers"].value_mae == pytest.approx(10.0)
    assert (record.overruled, record.reviewers_closer, record.custseq_closer) == (1, 1, 0)  # a only
    assert record.files == ("decisions.csv",) and record.calibration == NOT_CALIBRATED
    assert "Too few" in record.recommendation
    assert ReviewOutcomes.from_json(record.to_json()) == record  # metrics.json's review_outcomes reads back


def test_value_errors_are_left_out_when_the_values_are_margins():
    history = _decisions([("2023-01-10", 10, "a", "btyd", 0.2, 10.0, 0.9, 0.0, 0.9, 0.0)])
    outcomes = realised_outcomes(history, _spend([]), NEW_AS_OF, DATA_START)
    record = compare_sources(outcomes, ["d.csv"], value_measured=False)
    assert record.errors["custseq"].value_mae is None and record.errors["custseq"].churn_brier == pytest.approx(0.64)


def test_the_recommendation_needs_enough_customers_and_a_clear_winner():
    waiting = recommendation(0, 0, 0, pending=4)
    assert "nothing to recommend" in waiting and "4 wait for their horizon" in waiting
    assert "Too few" in recommendation(MIN_OVERRULED - 1, MIN_OVERRULED - 1, 0)
    assert recommendation(12, 12, 0).startswith("The reviewers' churn was closer than custseq's on 12 of 12")
    assert recommendation(12, 1, 11).startswith("custseq's churn was closer than the reviewers' on 11 of 12")
    assert recommendation(12, 6, 6).startswith("Neither")  # p = 1


def test_decisions_files_are_read_back_and_refused_when_they_cannot_be_labels(tmp_path):
    good = tmp_path / "decisions.csv"
    written = _decisions([("2023-01-10", 10, "007", "btyd", 0.2, 10.0, 0.9, 0.0, 0.9, 0.0)]).drop(columns="file")
    written.assign(as_of="2023-01-10").to_csv(good, index=False)
    history = read_decision_history([good, good])  # the same file twice: each decision once
    assert len(history) == 1 and history.loc[0, "customer_id"] == "007" and history.loc[0, "file"] == str(good)
    assert history.loc[0, "as_of"] == pd.Timestamp("2023-01-10") and history.loc[0, "horizon_days"] == 10
    assert read_decision_history([]).empty
    old = tmp_path / "old.csv"
    written.drop(columns=["as_of"]).to_csv(old, index=False)
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['as_of'\]"):
        read_decision_history([old])
    undated = tmp_path / "undated.csv"
    written.assign(as_of=np.nan).to_csv(undated, index=False)
    with pytest.raises(ConfigError, match="without an as-of date"):
        read_decision_history([undated])
    with pytest.raises(ConfigError, match="cannot read the decisions file"):
        read_decision_history([tmp_path / "nowhere.csv"])
