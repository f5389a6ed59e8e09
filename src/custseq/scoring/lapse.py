"""Lapsed regulars: customers whose own purchase rhythm says they have stopped, whatever a model predicts.

A customer's usual gap is the median number of days between their purchase days (``ipt_median`` of the
timing features), or, without it, their mean gap ``recency / frequency`` (first to last purchase day over the
repeat purchase days). Their silence is ``days_since_last_purchase`` (``T − recency``). A customer is a
*lapsed regular* when they bought on at least ``lapsed_min_purchase_days`` days and have been silent for at
least ``lapsed_silent_gaps`` usual gaps and ``lapsed_min_silent_days`` days
(:class:`~custseq.config.SegmentConfig`).

Why a rule beside the model: a new user's first spot check found households that shopped every other day and
then went silent for 80–195 days predicted at 1–13% churn, where such households had churned 29–41% in the
data's own past. Segments, retention flags and contacts therefore treat lapsed regulars as at risk, and their
decision churn is at least the churn rate lapsed regulars showed in the labelled training windows
(:func:`lapsed_churn_rate`), measured, not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from custseq.config import SegmentConfig

CADENCE_COLUMNS = ("frequency", "recency", "T", "ipt_median")  # what :func:`cadence` reads (ipt_median if there)
MIN_MEASURED = 30  # lapsed regulars the training windows must hold, pooled, for their churn rate to be used


def cadence(features: pd.DataFrame, cfg: SegmentConfig) -> pd.DataFrame:
    """Each customer's usual gap, silence and whether they are a lapsed regular.

    Parameters
    ----------
    features : pandas.DataFrame
        A window's features table with ``frequency``, ``recency`` and ``T`` (and ``ipt_median`` when the
        timing features are on); one row per customer.
    cfg : SegmentConfig
        The lapsed-regular thresholds.

    Returns
    -------
    pandas.DataFrame
        With the index of ``features``: ``purchase_days``, ``usual_gap_days`` (NaN with one purchase day),
        ``silent_days``, ``lapsed_regular`` (bool) and ``history_days`` (since the first purchase).
    """
    frequency = features["frequency"].to_numpy(dtype=float)
    recency = features["recency"].to_numpy(dtype=float)
    silent = features["T"].to_numpy(dtype=float) - recency
    mean_gap = np.divide(recency, frequency, out=np.full(len(features), np.nan), where=frequency > 0)
    nothing = np.full(len(features), np.nan)
    median = features["ipt_median"].to_numpy(dtype=float) if "ipt_median" in features else nothing
    usual = np.where(np.isfinite(median) & (median > 0), median, mean_gap)
    purchase_days = frequency + 1
    with np.errstate(invalid="ignore"):
        lapsed = (
            (purchase_days >= cfg.lapsed_min_purchase_days)
            & (silent >= cfg.lapsed_min_silent_days)
            & (silent >= cfg.lapsed_silent_gaps * usual)
        )
    columns = {
        "purchase_days": purchase_days,
        "usual_gap_days": usual,
        "silent_days": silent,
        "lapsed_regular": lapsed,
        "history_days": features["T"].to_numpy(dtype=float),
    }
    return pd.DataFrame(columns, index=features.index)


def lapsed_churn_rate(windows: Sequence[tuple[pd.DataFrame, np.ndarray]], cfg: SegmentConfig) -> float | None:
    """The churn rate of the lapsed regulars of labelled windows (features, churned), pooled.

    None when they hold fewer than :data:`MIN_MEASURED` lapsed regulars: too few to measure a rate.
    """
    churned = [labels[cadence(features, cfg)["lapsed_regular"].to_numpy()] for features, labels in windows]
    pooled = np.concatenate(churned) if churned else np.array([])
    if len(pooled) < MIN_MEASURED:
        return None
    rate = float(np.mean(pooled))
    return rate if math.isfinite(rate) else None


def decision_churn(churn: np.ndarray, lapsed: np.ndarray, rate: float | None) -> np.ndarray:
    """The churn probability decisions use: the prediction, raised to the measured lapsed rate for lapsed regulars."""
    if rate is None:
        return churn
    return np.where(lapsed, np.maximum(churn, rate), churn)
