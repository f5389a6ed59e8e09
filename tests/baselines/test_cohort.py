"""Signup cohorts, the cohort exponential-smoothing forecast and the cohort-level WAPE."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from custseq.baselines.cohort import (
    cohort_forecast,
    cohort_wape,
    compare_by_cohort,
    signup_cohorts,
    transaction_cohorts,
)
from custseq.config import BaselineConfig
from custseq.errors import SchemaError

CUTOFF = dt.datetime(2024, 1, 1)  # as-of day 2023-12-31


def test_signup_cohorts_by_hand():
    features = pa.table({"customer_id": ["a", "b", "c", "d"], "cutoff": [CUTOFF] * 4, "T": [0.0, 30.0, 31.0, 95.0]})
    # first purchase = 2023-12-31 - T: 12-31, 12-01, 11-30, 09-27
    assert signup_cohorts(features).tolist() == ["2023-12", "2023-12", "2023-11", "2023-09"]
    assert signup_cohorts(features, "quarter").tolist() == ["2023Q4", "2023Q4", "2023Q4", "2023Q3"]


def test_signup_cohorts_name_the_missing_column():
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['cutoff'\]"):
        signup_cohorts(pa.table({"customer_id": ["a"], "T": [1.0]}))


def test_transaction_cohorts_start_at_the_first_purchase_before_the_cutoff():
    rows = pd.DataFrame({
        "customer_id": ["a", "a", "b", "c"],
        "ts": pd.to_datetime(["2023-10-30", "2023-11-02", "2023-12-05", "2024-01-03"]),
        "amount": [-5.0, 20.0, -8.0, 10.0],
    })  # fmt: skip
    # a: the refund in October is not a purchase; b: refunds only; c: after the cutoff
    assert transaction_cohorts(rows, CUTOFF).to_dict() == {"a": "2023-11", "b": "2023-12"}


def periodic_revenue(revenue_per_period: list[float], cohort_start: str, customer: str = "c1") -> pd.DataFrame:
    """One row per 30-day period, the last period ending at CUTOFF, after a first purchase at ``cohort_start``."""
    n = len(revenue_per_period)
    rows = [{"customer_id": customer, "ts": pd.Timestamp(cohort_start), "amount": 1.0}]
    for k, amount in enumerate(revenue_per_period):
        ts = pd.Timestamp(CUTOFF) - pd.Timedelta(days=30 * (n - k)) + pd.Timedelta(days=3)
        rows.append({"customer_id": customer, "ts": ts, "amount": amount})
    return pd.DataFrame(rows)


def test_forecast_follows_a_linear_trend():
    history = [100.0 + 20.0 * k for k in range(16)]  # the 16 periods after the signup month
    rows = periodic_revenue(history, "2022-08-05")
    out = cohort_forecast(rows, CUTOFF, horizon_days=90)
    expected = sum(100.0 + 20.0 * k for k in (16, 17, 18))  # 1320
    assert out.loc[0, ["cohort", "periods", "method"]].tolist() == ["2022-08", 16, "holt"]
    assert out.loc[0, "forecast"] == pytest.approx(expected, rel=0.03)


def test_short_series_gets_simple_smoothing_and_a_fractional_horizon_counts_pro_rata():
    rows = periodic_revenue([50.0, 70.0, 50.0, 70.0, 60.0], "2023-07-10")
    out = cohort_forecast(rows, CUTOFF, horizon_days=45)
    assert out.loc[0, ["periods", "method"]].tolist() == [5, "simple"]
    assert 1.5 * 50.0 <= out.loc[0, "forecast"] <= 1.5 * 70.0  # a level between the extremes, for 1.5 periods


def test_constant_revenue_is_repeated_and_a_young_cohort_borrows_per_customer():
    steady = periodic_revenue([40.0] * 6, "2023-06-10", customer="old")
    young = pd.DataFrame({"customer_id": ["new1", "new2"], "ts": [pd.Timestamp("2023-12-20")] * 2, "amount": 9.0})
    out = cohort_forecast(pd.concat([steady, young]), CUTOFF, horizon_days=75).set_index("cohort")
    assert out.loc["2023-06", "method"] == "naive" and out.loc["2023-06", "forecast"] == pytest.approx(100.0)
    # two customers at the 2023-06 cohort's 100 per customer
    assert out.loc["2023-12", ["customers", "periods", "method", "forecast"]].tolist() == [2, 0, "borrowed", 200.0]


def test_a_young_cohort_with_no_older_series_gets_nothing():
    young = pd.DataFrame({"customer_id": ["new"], "ts": [pd.Timestamp("2023-12-20")], "amount": [99.0]})
    out = cohort_forecast(young, CUTOFF, horizon_days=75)
    assert out.loc[0, ["cohort", "periods", "method", "forecast"]].tolist() == ["2023-12", 0, "none", 0.0]


def test_rows_at_or_after_the_cutoff_do_not_move_the_forecast():
    rows = periodic_revenue([100.0 + 20.0 * k for k in range(12)], "2022-12-05")
    future = pd.DataFrame({"customer_id": ["c1", "z9"], "ts": [CUTOFF, CUTOFF + dt.timedelta(days=40)],
                           "amount": [1e6, 5e5]})  # fmt: skip
    before = cohort_forecast(rows, CUTOFF, 90)
    pd.testing.assert_frame_equal(before, cohort_forecast(pd.concat([rows, future]), CUTOFF, 90))


def test_period_length_comes_from_the_config():
    rows = periodic_revenue([40.0] * 6, "2023-06-10")
    out = cohort_forecast(rows, CUTOFF, horizon_days=60, config=BaselineConfig(smoothing_period_days=60))
    assert out.loc[0, ["periods", "forecast"]].tolist() == [3, 80.0]  # three 60-day periods of 80


def test_missing_transaction_columns_are_named():
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['amount'\]"):
        cohort_forecast(pd.DataFrame({"customer_id": ["a"], "ts": [CUTOFF]}), CUTOFF, 30)


def test_compare_by_cohort_by_hand():
    cohorts = ["A", "A", "B", "C"]
    actual = np.array([10.0, 20.0, 50.0, 0.0])  # totals A 30, B 50, C 0
    predicted = np.array([15.0, 5.0, 70.0, 10.0])  # totals A 20, B 70, C 10
    result = compare_by_cohort(cohorts, actual, predicted)
    assert result.totals.to_dict("index") == {
        "A": {"forecast": 20.0, "actual": 30.0}, "B": {"forecast": 70.0, "actual": 50.0},
        "C": {"forecast": 10.0, "actual": 0.0},
    }  # fmt: skip
    assert result.wape == pytest.approx((10 + 20 + 10) / 80)


def test_cohort_wape_counts_a_missing_cohort_as_zero():
    forecast = pd.Series({"A": 20.0, "B": 70.0})
    actual = pd.Series({"B": 50.0, "C": 30.0})
    assert cohort_wape(forecast, actual) == pytest.approx((20 + 20 + 30) / 80)
    assert np.isnan(cohort_wape(forecast, pd.Series({"A": 0.0})))


def test_compare_by_cohort_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match=r"cohorts \(2\), actual \(1\) and predicted \(2\)"):
        compare_by_cohort(["A", "B"], np.array([1.0]), np.array([1.0, 2.0]))
