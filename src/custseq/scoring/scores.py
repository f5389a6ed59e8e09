"""The composite value score: a HyperScore-style power-law boost of a raw score V in (0, 1].

The raw score is the weighted mean of three rank-normalised signals::

    V = (w_v · r(clv_expected) + w_r · r(1 − churn_probability) + w_e · r(purchase_days_last_h)) / (w_v + w_r + w_e)

where ``r(x)`` = the average rank of x among the customers scored together, divided by their number: in
(0, 1], ties sharing their mean rank. Ranks put a heavy-tailed value, a probability and a count on one scale,
unmoved by outliers, and keep V > 0 so that ln V is finite. A score is therefore relative to the customers
scored with it. The boost is::

    value_score = 100 · [1 + σ(β · ln V + γ)^κ],    σ(x) = 1 / (1 + e^(−x))

Since σ(β · ln V + γ) = V^β / (V^β + e^(−γ)), the score rises strictly with V for β, κ > 0, from 100 as
V → 0 to 100 · (1 + σ(γ)^κ) at V = 1. With the defaults β = 2, γ = 0, κ = 1 it is 100 · (1 + V² / (V² + 1)):
V = 0.25 gives 105.9, V = 0.5 gives 120 and V = 1 gives 150, so customers spread over the whole range. (With
β = 5, γ = −ln 2, κ = 2, the boost near V = 0 grows as V^10 / 4: ordinary customers all sat at 100.00 and the
score ranked no one but the top.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit
from scipy.stats import spearmanr

from custseq.config import ValueScoreConfig
from custseq.scoring.segments import check_predictions, features_by_customer, for_ranking

ENGAGEMENT_COLUMN = "purchase_days_last_h"  # purchase days in the last horizon before the cutoff


def value_scores(predictions: pd.DataFrame, features: pd.DataFrame, cfg: ValueScoreConfig | None = None) -> pd.Series:
    """The value score of every customer (the formula of this module's docstring).

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per customer with ``customer_id``, ``churn_probability`` and ``clv_expected``.
    features : pandas.DataFrame
        The same window's features table with ``customer_id`` and ``purchase_days_last_h``.
    cfg : ValueScoreConfig, optional
        Weights and boost parameters; defaults to ``ValueScoreConfig()``.

    Returns
    -------
    pandas.Series
        Named ``value_score``, with the index of ``predictions``, in (100, :func:`value_score_range`'s top].

    Raises
    ------
    SchemaError
        If a column is missing, a churn probability is not in [0, 1], or a customer has no features.
    """
    cfg = cfg or ValueScoreConfig()
    raw = raw_value_score(predictions, features, cfg)
    return pd.Series(hyperscore(raw, cfg), index=predictions.index, name="value_score")


def raw_value_score(predictions: pd.DataFrame, features: pd.DataFrame, cfg: ValueScoreConfig) -> np.ndarray:
    """V: the weighted mean of the rank-normalised value, retention and engagement, in (0, 1].

    Parameters
    ----------
    predictions, features : pandas.DataFrame
        As for :func:`value_scores`.
    cfg : ValueScoreConfig
        The weights (normalised here to sum to 1).

    Returns
    -------
    numpy.ndarray of float
        One V per row of ``predictions``.
    """
    signals = value_signals(predictions, features)
    return weighted_ranks([rank_normalise(signals[name]) for name in SIGNALS], cfg)


SIGNALS = ("value", "retention", "engagement")  # the ranked signals, in the order of the weights


def value_signals(predictions: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The three signals the raw score ranks, one row per row of ``predictions``: ``value``
    (``clv_expected``), ``retention`` (1 − ``churn_probability``) and ``engagement`` (``purchase_days_last_h``).

    Each is the customer's own; only their ranks depend on who is scored together.
    """
    check_predictions(predictions)
    engagement = features_by_customer(predictions, features, (ENGAGEMENT_COLUMN,))[ENGAGEMENT_COLUMN]
    columns = (predictions["clv_expected"], 1 - predictions["churn_probability"], engagement)
    return pd.DataFrame(
        {name: for_ranking(c) for name, c in zip(SIGNALS, columns, strict=True)}, index=predictions.index
    )


def weighted_ranks(normalised_ranks: Sequence[ArrayLike], cfg: ValueScoreConfig) -> np.ndarray:
    """V from the rank-normalised :data:`SIGNALS` (:func:`rank_normalise`, or the same ranks taken over a
    larger population, as Spark batch scoring does): their weighted mean with the normalised weights."""
    weights = _normalised_weights(cfg)
    # three signals, so the sum is an array, never sum()'s start value 0
    return cast(np.ndarray, sum(w * np.asarray(r, dtype=float) for w, r in zip(weights, normalised_ranks, strict=True)))


def rank_normalise(values: ArrayLike) -> np.ndarray:
    """Average rank divided by the number of values: in (0, 1], 1 for the largest, ties share their mean.

    Parameters
    ----------
    values : array-like of float
        Without missing values.

    Returns
    -------
    numpy.ndarray of float
        ``rank / n`` for each value (``[10, 20, 20, 40]`` gives ``[0.25, 0.625, 0.625, 1.0]``).
    """
    values = pd.Series(np.asarray(values, dtype=float))
    return values.rank(method="average").to_numpy() / max(len(values), 1)


def hyperscore(raw: ArrayLike, cfg: ValueScoreConfig | None = None) -> np.ndarray:
    """``100 · [1 + σ(β · ln V + γ)^κ]`` for each raw score V in (0, 1].

    Parameters
    ----------
    raw : array-like of float
        Raw scores V in (0, 1].
    cfg : ValueScoreConfig, optional
        β (``beta``), γ (``gamma``) and κ (``kappa``); defaults to ``ValueScoreConfig()``.

    Returns
    -------
    numpy.ndarray of float
        Scores in (100, 100 · (1 + σ(γ)^κ)], rising strictly with V.

    Raises
    ------
    ValueError
        If a raw score is outside (0, 1] or missing.
    """
    cfg = cfg or ValueScoreConfig()
    raw = np.asarray(raw, dtype=float)
    outside = ~((raw > 0) & (raw <= 1))  # NaN fails both comparisons
    if outside.any():
        raise ValueError(f"raw value scores must be in (0, 1]; {int(outside.sum())} are not (e.g. {raw[outside][0]})")
    return 100 * (1 + expit(cfg.beta * np.log(raw) + cfg.gamma) ** cfg.kappa)


def value_score_range(cfg: ValueScoreConfig | None = None) -> tuple[float, float]:
    """The infimum (V → 0) and the maximum (V = 1) of the value score: ``(100, 100 · (1 + σ(γ)^κ))``."""
    cfg = cfg or ValueScoreConfig()
    return 100.0, float(100 * (1 + expit(cfg.gamma) ** cfg.kappa))


def value_score_formula(cfg: ValueScoreConfig | None = None) -> str:
    """The value score's formula with the parameters filled in, for the report.

    Returns
    -------
    str
        With the defaults: ``value_score = 100 · [1 + σ(5 · ln V − 0.693147)^2], σ(x) = 1 / (1 + e^(−x));
        V = 0.5 · r(clv_expected) + 0.3 · r(1 − churn_probability) + 0.2 · r(purchase_days_last_h),
        r = average rank / number of customers`` (one line; the weights as normalised to sum to 1).
    """
    cfg = cfg or ValueScoreConfig()
    w_value, w_retention, w_engagement = _normalised_weights(cfg)
    sign = "−" if cfg.gamma < 0 else "+"
    return (
        f"value_score = 100 · [1 + σ({cfg.beta:g} · ln V {sign} {abs(cfg.gamma):g})^{cfg.kappa:g}], "
        f"σ(x) = 1 / (1 + e^(−x)); V = {w_value:.3g} · r(clv_expected) + {w_retention:.3g} · r(1 − churn_probability)"
        f" + {w_engagement:.3g} · r({ENGAGEMENT_COLUMN}), r = average rank / number of customers"
    )


@dataclass(frozen=True)
class ScoreSpread:
    """Whether the scores rank anyone: the share holding the commonest score (to 2 decimals, as shown), and
    the Spearman rank correlation of the score with expected value."""

    modal_share: float
    rank_correlation_with_value: float


def score_spread(scores: ArrayLike, clv_expected: ArrayLike) -> ScoreSpread:
    """How spread the value scores are (see :class:`ScoreSpread`); NaN correlation with fewer than 2 customers."""
    shown = pd.Series(np.round(np.asarray(scores, dtype=float), 2))
    if shown.empty:
        return ScoreSpread(math.nan, math.nan)
    modal = float(shown.value_counts(normalize=True).iloc[0])
    value = np.asarray(clv_expected, dtype=float)
    if len(shown) < 2 or np.ptp(value) == 0 or shown.nunique() < 2:
        return ScoreSpread(modal, math.nan)
    return ScoreSpread(modal, float(spearmanr(shown, value).statistic))


def _normalised_weights(cfg: ValueScoreConfig) -> tuple[float, float, float]:
    weights = np.array([cfg.value_weight, cfg.retention_weight, cfg.engagement_weight], dtype=float)
    return tuple((weights / weights.sum()).tolist())
