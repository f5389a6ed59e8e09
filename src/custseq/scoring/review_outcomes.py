"""Closing the review loop: earlier reviewers' decisions measured against what happened since.

``custseq plan --decisions`` saves each applied decision in ``decisions.csv`` with its run's as-of date and
horizon and the numbers that competed (custseq's, BG/NBD's, the reviewer's; :func:`~custseq.scoring.decisions.
decision_labels`). A later ``custseq predict`` given those files (``[audit] decisions_history``) measures each
decision whose label window [as-of + 1 day, as-of + horizon] has ended by the new as-of date, on the daily
spend that ``prepare`` writes from the validated transactions (every day before the new scoring cutoff):

* churned: no day of positive net spend in the window; value: the window's net spend, zero for a churner.
  These are the training labels of :mod:`custseq.labels` except on a day whose refunds outweigh its purchases
  (a purchase there, no purchase here), and the value is net spend, not margin: with a ``cost`` column the
  predicted values are margins, and the value errors are not measured.
* Decisions whose window has not ended are counted as pending; those whose window starts before the data
  have no outcome and are counted apart.

On the measured customers, custseq's, BG/NBD's and the reviewers' numbers (their override, or the source they
chose) get a Brier score and a mean absolute value error, and where the reviewers changed custseq's churn, who
was closer is counted; a one-sentence recommendation follows (a two-sided sign test, at least
:data:`MIN_OVERRULED` customers).

**Not fed into the churn calibration** (:data:`NOT_CALIBRATED`): the calibrator (:mod:`custseq.models.
calibration`) maps *this* model's raw churn scores to probabilities, fitted on validation customers scored at
the validation window's cutoff. The decided customers have no raw score from this model at their old as-of
date (those windows are not prepared), and they are the customers on whom custseq and BG/NBD disagreed most,
not a sample of all customers, so adding their outcomes as calibration points would bias the map. The
comparison is kept as a trust record for the people who review the next list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from custseq.errors import ConfigError
from custseq.io.run_files import PrepareSummary, ReviewOutcomes, SourceErrors
from custseq.scoring.decisions import DECISIONS, LABEL_COLUMNS

SOURCES = {"custseq": "custseq", "btyd": "btyd", "reviewers": "reviewed"}  # record key -> decisions.csv prefix
MIN_OVERRULED = 10  # fewer overruled customers with outcomes: too few to recommend anything
SIGN_TEST_LEVEL = 0.05
NOT_CALIBRATED = (
    "not fed into the churn calibration: the calibrator maps this model's raw churn scores, which the decided "
    "customers do not have at their old as-of dates, and they are the customers on whom custseq and BG/NBD "
    "disagreed most, not a sample of all customers"
)
MEASURED, PENDING, BEFORE_DATA = "measured", "pending", "before data"


def read_decision_history(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The decisions.csv files of earlier ``custseq plan --decisions`` runs, one row per decision.

    A customer decided in two runs gives two rows (two labels); the same file read twice gives each row once.

    Raises
    ------
    ConfigError
        If a file cannot be read, lacks a column of :data:`~custseq.scoring.decisions.LABEL_COLUMNS` (written
        by an older custseq: run plan --decisions again) or has a row without an as-of date or horizon.
    """
    frames = [_read_one(Path(p)) for p in paths]
    if not frames:
        return pd.DataFrame(columns=[*LABEL_COLUMNS, "file"])
    history = pd.concat(frames, ignore_index=True)
    return history.drop_duplicates(["as_of", "horizon_days", "customer_id"], keep="last").reset_index(drop=True)


def _read_one(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"customer_id": str, "decision": str, "as_of": str})
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the decisions file {path}: {e}") from None
    if missing := [c for c in LABEL_COLUMNS if c not in frame.columns]:
        raise ConfigError(
            f"{path} lacks column(s) {missing}: pass a decisions.csv written by `custseq plan --decisions` "
            "(run it again with this custseq version if the file is older)"
        )
    if frame["as_of"].isna().any() or frame["horizon_days"].isna().any():
        raise ConfigError(f"{path} has decisions without an as-of date or horizon: the folder plan read had no "
                          "metrics.json; add the as_of and horizon_days of the run that was reviewed")  # fmt: skip
    if bad := sorted(set(frame["decision"]) - set(DECISIONS)):
        raise ConfigError(f"{path}: decision must be one of {', '.join(DECISIONS)}, got {bad}")
    try:
        frame["as_of"] = pd.to_datetime(frame["as_of"], format="%Y-%m-%d")
        frame["horizon_days"] = frame["horizon_days"].astype(int)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: as_of must be a date (YYYY-MM-DD) and horizon_days whole days: {e}") from None
    return frame.assign(file=str(path))


def realised_outcomes(history: pd.DataFrame, spend: pd.DataFrame, as_of: dt.date, data_start: dt.date) -> pd.DataFrame:
    """``history`` with ``status`` (measured, pending, before data) and, when measured, ``churned`` and ``value``.

    ``spend`` is the daily spend of ``prepare`` (``customer_id``, ``ts``: the day, ``amount``: its net spend),
    every day up to ``as_of``, the new run's as-of date; ``data_start`` is the data's first day.
    """
    out = history.reset_index(drop=True).copy()
    start = out["as_of"] + pd.Timedelta(days=1)
    end = out["as_of"] + pd.to_timedelta(out["horizon_days"], unit="D")  # the window's last day, inclusive
    out["status"] = np.select(
        [end > pd.Timestamp(as_of), start < pd.Timestamp(data_start)], [PENDING, BEFORE_DATA], MEASURED
    )
    days = spend.assign(customer_id=spend["customer_id"].astype(str), day=pd.to_datetime(spend["ts"]))
    windows = out.loc[out["status"] == MEASURED, ["customer_id"]].assign(start=start, end=end, row=lambda f: f.index)
    inside = windows.merge(days[["customer_id", "day", "amount"]], on="customer_id", how="inner")
    inside = inside[(inside["day"] >= inside["start"]) & (inside["day"] <= inside["end"])]
    per_row = inside.assign(bought=inside["amount"] > 0).groupby("row").agg(spent=("amount", "sum"),
                                                                             bought=("bought", "any"))  # fmt: skip
    bought, spent = np.zeros(len(out), dtype=bool), np.zeros(len(out))
    bought[per_row.index.to_numpy(int)] = per_row["bought"].to_numpy(bool)
    spent[per_row.index.to_numpy(int)] = per_row["spent"].to_numpy(float)
    measured = out["status"] == MEASURED
    out["churned"] = np.where(measured, (~bought).astype(float), np.nan)
    out["value"] = np.where(measured, np.where(bought, spent, 0.0), np.nan)
    return out


def compare_sources(outcomes: pd.DataFrame, files: Sequence[str], *, value_measured: bool = True) -> ReviewOutcomes:
    """Who was right on the measured decisions of ``outcomes`` (from :func:`realised_outcomes`).

    Errors are on the measured customers where every source has its numbers; ``value_measured`` False (the
    predicted values are margins, the outcomes net spend) leaves the value errors out.
    """
    status = outcomes["status"]
    measured = outcomes[status == MEASURED]
    numbers = [f"{p}_{n}" for p in SOURCES.values() for n in ("churn_probability", "clv_expected")]
    compared = measured[np.isfinite(measured[numbers].to_numpy(float)).all(axis=1)]
    y, value = compared["churned"].to_numpy(float), compared["value"].to_numpy(float)
    errors = {}
    for key, prefix in SOURCES.items():
        churn, clv = compared[f"{prefix}_churn_probability"], compared[f"{prefix}_clv_expected"]
        errors[key] = SourceErrors(
            churn_brier=float(np.mean((churn.to_numpy(float) - y) ** 2)) if len(y) else None,
            value_mae=float(np.mean(np.abs(clv.to_numpy(float) - value))) if len(y) and value_measured else None,
        )
    custseq, reviewed = compared["custseq_churn_probability"], compared["reviewed_churn_probability"]
    overruled = ~np.isclose(reviewed, custseq)
    reviewers_gap, custseq_gap = np.abs(reviewed - y)[overruled], np.abs(custseq - y)[overruled]
    closer = (int((reviewers_gap < custseq_gap).sum()), int((custseq_gap < reviewers_gap).sum()))
    return ReviewOutcomes(
        files=tuple(files),
        decisions=len(outcomes),
        measured=len(measured),
        pending=int((status == PENDING).sum()),
        before_data=int((status == BEFORE_DATA).sum()),
        by_decision={d: int((measured["decision"] == d).sum()) for d in DECISIONS},
        errors=errors,
        overruled=int(overruled.sum()),
        reviewers_closer=closer[0],
        custseq_closer=closer[1],
        recommendation=recommendation(int(overruled.sum()), *closer, pending=int((status == PENDING).sum())),
        calibration=NOT_CALIBRATED,
    )


def recommendation(overruled: int, reviewers_closer: int, custseq_closer: int, *, pending: int = 0) -> str:
    """One sentence on whose churn to trust where the reviewers overruled custseq (a two-sided sign test)."""
    if overruled == 0:
        waiting = f"; {pending:,} wait for their horizon to end" if pending else ""
        return f"No decision that changed custseq's churn has an outcome yet{waiting}: nothing to recommend."
    if overruled < MIN_OVERRULED:
        return (f"Too few overruled customers with outcomes ({overruled}, at least {MIN_OVERRULED} needed) to "
                "tell whom to trust; keep reviewing and pass these files again later.")  # fmt: skip
    decisive = reviewers_closer + custseq_closer
    p = stats.binomtest(reviewers_closer, decisive).pvalue if decisive else 1.0
    if p >= SIGN_TEST_LEVEL:
        return (f"Neither the reviewers nor custseq were reliably closer where they disagreed (sign test p = "
                f"{p:.2f}): keep reviewing, and weigh each side's Brier score above.")  # fmt: skip
    if reviewers_closer > custseq_closer:
        return (f"The reviewers' churn was closer than custseq's on {reviewers_closer} of {overruled} overruled "
                f"customers (sign test p = {p:.3f}): keep reviewing the list before acting on it.")  # fmt: skip
    return (f"custseq's churn was closer than the reviewers' on {custseq_closer} of {overruled} overruled "
            f"customers (sign test p = {p:.3f}): prefer custseq on the review list unless the reviewer knows "
            "something the data do not.")  # fmt: skip


def review_outcomes(
    history: pd.DataFrame, spend: pd.DataFrame, as_of: dt.date, data_start: dt.date, *, value_measured: bool = True
) -> ReviewOutcomes | None:
    """The record of metrics.json for the decisions of :func:`read_decision_history`; None without any."""
    if history.empty:
        return None
    outcomes = realised_outcomes(history, spend, as_of, data_start)
    files = tuple(dict.fromkeys(history["file"]))
    return compare_sources(outcomes, files, value_measured=value_measured)


def review_outcomes_of_prepared(
    history: pd.DataFrame, daily_spend_file: Path, summary: PrepareSummary
) -> ReviewOutcomes | None:
    """:func:`review_outcomes` on a ``prepare`` output: its daily spend, as-of date and first day; the value
    errors are left out when a ``cost`` column makes the predicted values margins."""
    if history.empty:
        return None
    spend = pq.read_table(daily_spend_file).to_pandas()
    as_of = dt.date.fromisoformat(summary.as_of)
    data_start = dt.datetime.fromisoformat(summary.data_start).date()
    transactions = summary.tables.get("transactions")
    margins = transactions is not None and any(c.column == "cost" for c in transactions.mapping)
    return review_outcomes(history, spend, as_of, data_start, value_measured=not margins)
