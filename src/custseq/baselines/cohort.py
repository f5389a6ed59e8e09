"""Signup cohorts: who joined when, an exponential-smoothing revenue forecast per cohort, and cohort-level errors.

A customer's signup cohort is the calendar month (or quarter) of their first purchase. The same cohorts group
the cross-validation folds of the gradient-boosting baselines (:mod:`custseq.baselines.tabular`) and let
per-customer predictions (custseq's, BTYD's, any baseline's) be compared, summed per cohort, with an aggregate
forecast that never looks at a single customer: exponential smoothing of each cohort's revenue per period.

Reference: Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §8.1-8.2 (simple
exponential smoothing; Holt's linear trend with Gardner & McKenzie's damping).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa

from custseq.config import BaselineConfig
from custseq.errors import SchemaError

log = logging.getLogger(__name__)

PERIOD_FREQ = {"month": "M", "quarter": "Q"}
TRANSACTION_COLUMNS = ("customer_id", "ts", "amount")
FORECAST_METHODS = ("holt", "simple", "naive", "borrowed", "none")


def signup_cohorts(features: pa.Table, period: str = "month") -> np.ndarray:
    """The signup cohort of every row of a window's features table, e.g. ``"1997-01"`` or ``"1997Q1"``.

    The first purchase day is the window's as-of day (the day before ``cutoff``) minus ``T`` days, which is
    how :mod:`custseq.features.rfm` defines ``T``.

    Parameters
    ----------
    features
        A ``features.parquet`` table written by ``prepare`` (needs ``cutoff`` and ``T``).
    period
        ``"month"`` or ``"quarter"``.

    Returns
    -------
    numpy.ndarray
        One cohort label (str) per row, in the table's order.

    Raises
    ------
    SchemaError
        If the table lacks ``cutoff`` or ``T``.
    """
    if missing := sorted({"cutoff", "T"} - set(features.column_names)):
        raise SchemaError(
            f"the features table is missing column(s) {missing}, which date each customer's signup; "
            "use a window written by prepare, or turn cohort_cv off"
        )
    cutoff = pd.to_datetime(features.column("cutoff").to_pandas()).dt.normalize()
    days_since_first = pd.to_timedelta(features.column("T").to_pandas(), unit="D")
    first_purchase = cutoff - pd.Timedelta(days=1) - days_since_first
    return _period_labels(first_purchase, period)


def _period_labels(days: pd.Series, period: str) -> np.ndarray:
    return days.dt.to_period(PERIOD_FREQ[period]).astype(str).to_numpy()


def transaction_cohorts(transactions: pd.DataFrame, cutoff: dt.datetime, period: str = "month") -> pd.Series:
    """The signup cohort of every customer with a transaction before ``cutoff``, from raw transactions.

    The first purchase is the first row that is not a refund (amount >= 0; the first row at all for a customer
    who only has refunds), matching ``T`` of the features table.

    Returns
    -------
    pandas.Series
        Cohort label (str) indexed by ``customer_id``.
    """
    before = _rows_before(transactions, cutoff)
    purchases = before[before["amount"] >= 0].groupby("customer_id")["ts"].min()
    any_row = before.groupby("customer_id")["ts"].min()
    first = purchases.reindex(any_row.index).fillna(any_row).dt.normalize()
    return pd.Series(_period_labels(first, period), index=first.index, name="cohort")


def _rows_before(transactions: pd.DataFrame, cutoff: dt.datetime) -> pd.DataFrame:
    if missing := sorted(set(TRANSACTION_COLUMNS) - set(transactions.columns)):
        raise SchemaError(
            f"transactions are missing column(s) {missing}; found {sorted(transactions.columns)}. "
            "Pass validated rows with customer_id, ts and amount."
        )
    rows = transactions.loc[:, list(TRANSACTION_COLUMNS)]
    rows = rows.assign(ts=pd.to_datetime(rows["ts"]), amount=rows["amount"].astype(float))
    return rows[rows["ts"] < pd.Timestamp(cutoff)]  # only the past is read, whatever the caller passed


def cohort_forecast(
    transactions: pd.DataFrame,
    cutoff: dt.datetime,
    horizon_days: int,
    config: BaselineConfig | None = None,
) -> pd.DataFrame:
    """Forecast each signup cohort's revenue over ``[cutoff, cutoff + horizon_days)`` by exponential smoothing.

    Each cohort's series is its revenue per period of ``config.smoothing_period_days`` days, counted back from
    the cutoff so every period is complete, from the first period that starts after the cohort's signup
    period ended (first purchases do not repeat, so the signup spike is left out). A series of at least
    ``config.smoothing_min_periods_trend`` periods gets Holt's linear trend (damped by default: an undamped
    trend extrapolated over many periods runs away); a shorter one simple exponential smoothing; a single
    period or a constant series is repeated. A cohort younger than one period after signup borrows the
    forecast per customer of the youngest older cohort that has a series (0 if there is none). Negative
    forecasts (refunds outweighing sales) are clipped to 0.

    Parameters
    ----------
    transactions
        Validated rows with ``customer_id``, ``ts`` and ``amount``; rows at or after ``cutoff`` are ignored.
    cutoff
        The window's cutoff instant (midnight after its as-of day).
    horizon_days
        Days forecast from the cutoff; a fraction of a period counts pro rata.
    config
        ``cohort_period`` and the ``smoothing_*`` settings; default :class:`BaselineConfig`.

    Returns
    -------
    pandas.DataFrame
        One row per cohort, sorted: ``cohort``, ``customers``, ``periods`` (length of the fitted series),
        ``method`` (one of holt, simple, naive, borrowed, none) and ``forecast`` (revenue over the horizon).

    Raises
    ------
    SchemaError
        If ``transactions`` lacks customer_id, ts or amount.
    """
    cfg = config or BaselineConfig()
    before = _rows_before(transactions, cutoff)
    cohorts = transaction_cohorts(before, cutoff, cfg.cohort_period)
    period_days = cfg.smoothing_period_days
    ts = cast("pd.Series[pd.Timestamp]", before["ts"])
    periods_back = (pd.Timestamp(cutoff) - ts) // pd.Timedelta(days=period_days)  # 0 = the last period
    revenue = (
        before.assign(cohort=before["customer_id"].map(cohorts), back=periods_back)
        .groupby(["cohort", "back"])["amount"]
        .sum()
    )
    rows = []
    for cohort, customers in cohorts.value_counts().sort_index().items():
        label = cast(str, cohort)  # transaction_cohorts' labels are str
        series = _cohort_series(revenue.loc[label], label, cfg, cutoff)
        forecast, method = _smooth(series, horizon_days / period_days, cfg)
        rows.append({"cohort": cohort, "customers": customers, "periods": len(series), "method": method,
                     "forecast": forecast})  # fmt: skip
    return _borrow_for_young_cohorts(
        pd.DataFrame(rows, columns=["cohort", "customers", "periods", "method", "forecast"])
    )


def _borrow_for_young_cohorts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Give cohorts without a series the per-customer forecast of the youngest older cohort that has one."""
    out = forecasts.copy()
    per_customer: float | None = None
    for i in out.index:  # oldest cohort first
        if cast(int, out.at[i, "periods"]) > 0:
            per_customer = cast(float, out.at[i, "forecast"]) / cast(int, out.at[i, "customers"])
        elif per_customer is not None:
            # pandas-stubs has no overload for setting one row's columns from a list, which pandas supports
            out.loc[i, ["method", "forecast"]] = ["borrowed", per_customer * cast(int, out.at[i, "customers"])]  # type: ignore[index, assignment]
    return out


def _cohort_series(revenue: pd.Series, cohort: str, cfg: BaselineConfig, cutoff: dt.datetime) -> np.ndarray:
    """Revenue per period (oldest first) of the complete periods after the cohort's signup period ended."""
    signup_end = (pd.Period(cohort, PERIOD_FREQ[cfg.cohort_period]) + 1).start_time
    n_periods = max(0, (pd.Timestamp(cutoff) - signup_end) // pd.Timedelta(days=cfg.smoothing_period_days))
    back = np.arange(n_periods - 1, -1, -1)  # oldest first
    return revenue.reindex(back, fill_value=0.0).to_numpy(dtype=float)


def _smooth(series: np.ndarray, horizon_periods: float, cfg: BaselineConfig) -> tuple[float, str]:
    """Revenue over ``horizon_periods`` (possibly fractional) periods after the series, and the method used."""
    steps = math.ceil(horizon_periods)
    weights = np.ones(steps)
    weights[-1] = horizon_periods - (steps - 1)  # the last period only partly inside the horizon
    if len(series) == 0:
        return 0.0, "none"
    if len(series) == 1 or np.ptp(series) == 0:
        path, method = np.full(steps, series[-1]), "naive"
    else:
        path, method = _fit_smoothing(series, steps, cfg)
    return float(np.clip(path, 0, None) @ weights), method


def _fit_smoothing(series: np.ndarray, steps: int, cfg: BaselineConfig) -> tuple[np.ndarray, str]:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.holtwinters import ExponentialSmoothing, SimpleExpSmoothing

    with warnings.catch_warnings():
        # short series often end the optimiser at its iteration limit; the fit is still the best found
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(series) >= cfg.smoothing_min_periods_trend:
            model = ExponentialSmoothing(
                series, trend="add", damped_trend=cfg.smoothing_damped_trend, initialization_method="estimated"
            )
            return model.fit().forecast(steps), "holt"
        return SimpleExpSmoothing(series, initialization_method="estimated").fit().forecast(steps), "simple"


@dataclass(frozen=True)
class CohortComparison:
    """Per-cohort totals of a forecast and of what happened, and the cohort-level WAPE."""

    totals: pd.DataFrame  # index: cohort; columns: forecast, actual
    wape: float


def compare_by_cohort(
    cohorts: Sequence[str] | np.ndarray, actual: np.ndarray, predicted: np.ndarray
) -> CohortComparison:
    """Sum per-customer actual and predicted values per cohort and score the totals with :func:`cohort_wape`.

    Parameters
    ----------
    cohorts
        Each customer's cohort, e.g. from :func:`signup_cohorts` on the scored window's features.
    actual, predicted
        Each customer's value over the horizon, in the same order.

    Raises
    ------
    ValueError
        If the three inputs differ in length.
    """
    if not len(cohorts) == len(actual) == len(predicted):
        raise ValueError(
            f"cohorts ({len(cohorts)}), actual ({len(actual)}) and predicted ({len(predicted)}) values must "
            "describe the same customers"
        )
    frame = pd.DataFrame({"cohort": np.asarray(cohorts), "forecast": predicted, "actual": actual})
    totals = frame.groupby("cohort").sum()
    return CohortComparison(totals, cohort_wape(totals["forecast"], totals["actual"]))


def cohort_wape(forecast: pd.Series, actual: pd.Series) -> float:
    """Weighted absolute percentage error over cohorts: Σ|forecast − actual| / Σ actual.

    Both series are indexed by cohort; a cohort missing from one side counts as 0 there. NaN when the actual
    total is not positive.
    """
    forecast, actual = forecast.astype(float).align(actual.astype(float), fill_value=0.0)
    total = actual.sum()
    return float(np.abs(forecast - actual).sum() / total) if total > 0 else math.nan
