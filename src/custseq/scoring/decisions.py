"""The review loop (seed 004): reviewers' decisions on review.csv, applied back to the predictions.

``review.csv`` lists customers on whom custseq and BG/NBD + Gamma-Gamma disagree. It comes with three empty
columns for a reviewer to fill, one row at a time:

* ``decision`` — ``custseq`` (keep custseq's numbers), ``btyd`` (take BG/NBD + Gamma-Gamma's) or
  ``override`` (take the reviewer's own), or empty (not reviewed);
* ``override_churn_probability``, ``override_clv_expected`` — the reviewer's numbers, for ``override`` (either
  may stay empty to keep custseq's).

``custseq plan FOLDER --decisions review.csv`` applies them: churn and value change where decided, the plans
and retention flags are made again from the new numbers, and the counts go to metrics.json and the report.

The applied decisions are also saved as ``decisions.csv`` (:func:`decision_labels`, columns
:data:`LABEL_COLUMNS`): the run's as-of date and horizon, the customer, the decision, and the numbers that
competed at decision time — custseq's, BG/NBD's, the reviewer's override and what the decision made of them.
Once the horizon has passed, a later ``custseq predict`` with ``[audit] decisions_history`` (or
``--decisions-history``) measures them against what happened (:mod:`custseq.scoring.review_outcomes`): who was
right, shown as a per-source record in metrics.json and the report. They are not fed into the new predictor's
churn calibration; that module says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from custseq.errors import ConfigError

DECISIONS = ("custseq", "btyd", "override")
DECISION_COLUMNS = ("decision", "override_churn_probability", "override_clv_expected")  # added to review.csv
CHURN_VALUE = ("churn_probability", "clv_expected")
SOURCES = ("custseq", "btyd", "override", "reviewed")  # the competing numbers in decisions.csv
LABEL_COLUMNS = ("as_of", "horizon_days", "customer_id", "decision",
                 *(f"{s}_{n}" for s in SOURCES for n in CHURN_VALUE))  # fmt: skip


@dataclass(frozen=True)
class AppliedDecisions:
    """The predictions after the decisions, and what was applied."""

    predictions: pd.DataFrame
    counts: dict[str, int]  # decision -> customers it changed or kept
    unknown_customers: int  # decided rows whose customer is not in the predictions
    decided: pd.DataFrame  # the decided rows, as read


def with_decision_columns(review: pd.DataFrame) -> pd.DataFrame:
    """review.csv with the empty columns a reviewer fills."""
    return review.assign(**{c: pd.Series([None] * len(review), dtype=object) for c in DECISION_COLUMNS})


def apply_decisions(predictions: pd.DataFrame, decisions: pd.DataFrame, source: str = "decisions") -> AppliedDecisions:
    """Apply the reviewers' decisions (rows of a filled-in review.csv) to the predictions.

    Raises
    ------
    ConfigError
        If the file lacks ``customer_id`` or ``decision``, a decision is not one of :data:`DECISIONS`, an
        override is not a number (churn in [0, 1], value ≥ 0), a ``btyd`` row lacks BG/NBD's numbers, or a
        customer is decided twice.
    """
    if missing := [c for c in ("customer_id", "decision") if c not in decisions.columns]:
        raise ConfigError(f"{source} lacks column(s) {missing}: fill in the decision column of review.csv")
    decided = decisions[decisions["decision"].fillna("").astype(str).str.strip() != ""].copy()
    decided["decision"] = decided["decision"].astype(str).str.strip().str.lower()
    if bad := sorted(set(decided["decision"]) - set(DECISIONS)):
        raise ConfigError(f"{source}: decision must be one of {', '.join(DECISIONS)} (or empty), got {bad}")
    decided["customer_id"] = decided["customer_id"].astype(str)
    if (repeated := decided["customer_id"][decided["customer_id"].duplicated()]).any():
        raise ConfigError(f"{source}: customer {repeated.iloc[0]!r} is decided more than once")
    out = predictions.copy()
    index = {c: i for i, c in enumerate(out["customer_id"].astype(str))}
    churn, value = out["churn_probability"].to_numpy(float).copy(), out["clv_expected"].to_numpy(float).copy()
    counts = dict.fromkeys(DECISIONS, 0)
    unknown = 0
    for row in decided.itertuples(index=False):
        i = index.get(str(row.customer_id))
        if i is None:
            unknown += 1
            continue
        new_churn, new_value = _decided_numbers(row, source)
        churn[i] = churn[i] if new_churn is None else new_churn
        value[i] = value[i] if new_value is None else new_value
        counts[str(row.decision)] += 1
    out["churn_probability"], out["clv_expected"] = churn, value
    return AppliedDecisions(out, counts, unknown, decided)


def decision_labels(
    applied: AppliedDecisions, predictions: pd.DataFrame, as_of: str | None, horizon_days: int | None
) -> pd.DataFrame:
    """decisions.csv: one row per applied decision, with what a later run needs to use it as a label.

    ``predictions`` are those the decisions were applied to. custseq's numbers are the review row's (review.csv
    holds custseq's numbers as predict wrote them), else the predictions'; ``reviewed_*`` are the numbers the
    decision put in the predictions. ``as_of`` and ``horizon_days`` come from the run's metrics.json (empty
    without one). Decided customers missing from the predictions are left out: nothing was applied to them.
    """
    by_id = predictions.set_index(predictions["customer_id"].astype(str))
    rows = []
    for row in applied.decided.itertuples(index=False):
        customer = str(row.customer_id)
        if customer not in by_id.index:
            continue
        custseq = tuple(_first_number(getattr(row, n, None), by_id.at[customer, n]) for n in CHURN_VALUE)
        btyd = tuple(_number(getattr(row, f"btyd_{n}", None), f"btyd_{n}", "decisions", row) for n in CHURN_VALUE)
        decided = _decided_numbers(row, "decisions")  # checked by apply_decisions: cannot raise here
        override = decided if row.decision == "override" else (None, None)
        reviewed = tuple(c if d is None else d for c, d in zip(custseq, decided, strict=True))
        numbers = (*custseq, *btyd, *override, *reviewed)
        rows.append((as_of, horizon_days, customer, row.decision, *numbers))
    frame = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    numeric = list(LABEL_COLUMNS[4:])
    frame[numeric] = frame[numeric].astype(float)
    return frame


def _first_number(raw: object, fallback: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        value = float("nan")
    return value if np.isfinite(value) else float(cast(float, fallback))


def _decided_numbers(row: Any, source: str) -> tuple[float | None, float | None]:
    decision = row.decision
    if decision == "custseq":
        return None, None
    if decision == "btyd":
        churn = _number(getattr(row, "btyd_churn_probability", None), "btyd_churn_probability", source, row)
        value = _number(getattr(row, "btyd_clv_expected", None), "btyd_clv_expected", source, row)
        if churn is None or value is None:
            raise ConfigError(f"{source}: customer {row.customer_id!r} is decided btyd but the row "
                              "has no BG/NBD numbers; keep review.csv's columns")  # fmt: skip
        return churn, value
    churn = _number(getattr(row, "override_churn_probability", None), "override_churn_probability", source, row)
    value = _number(getattr(row, "override_clv_expected", None), "override_clv_expected", source, row)
    if churn is not None and not 0 <= churn <= 1:
        raise ConfigError(f"{source}: override_churn_probability must be in [0, 1], got {churn}")
    if value is not None and value < 0:
        raise ConfigError(f"{source}: override_clv_expected must be >= 0, got {value}")
    return churn, value


def _number(raw: object, column: str, source: str, row: Any) -> float | None:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
        return None
    try:
        return float(str(raw))
    except ValueError:
        raise ConfigError(f"{source}: {column} of customer {row.customer_id!r} is not a number: {raw!r}") from None
