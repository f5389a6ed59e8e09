"""Segments: one label per customer from churn probability, expected value and the RFM features.

The rules are tried in this order and the first that holds gives the segment, so every customer gets
exactly one. ``p`` is ``churn_probability``; the thresholds are :class:`~custseq.config.SegmentConfig`
settings (defaults in brackets); ``frequency``, ``recency`` and ``T`` are the BTYD columns of the
features table (:mod:`custseq.features.rfm`), so ``T − recency`` is the days since the last purchase.

1. ``high_value_potential_attrier``: top value tier and ``p > attrier_churn`` (0.65) or a lapsed regular.
2. ``new``: ``T < new_customer_days`` (the horizon): the first purchase lies within the last horizon (and not
   a lapsed regular).
3. ``champion``: top value tier and ``p ≤ champion_max_churn`` (0.35), not a lapsed regular.
4. ``loyal``: ``frequency ≥ loyal_min_frequency`` (2 repeat purchase days), ``p ≤ at_risk_churn`` (0.5) and
   not a lapsed regular.
5. ``hibernating``: at risk (``p > at_risk_churn`` or a lapsed regular) and ``T − recency ≥ hibernating_days``
   (the horizon): no purchase within the last horizon.
6. ``at_risk``: ``p > at_risk_churn`` or a lapsed regular: bought recently, but predicted to stop or
   overdue by their own rhythm.
7. ``potential_loyalist``: everyone else: ``p ≤ at_risk_churn``, fewer repeat purchases than loyal, and not
   a top-tier champion.

Why this order: the high-value attrier comes first because it is the segment a retention campaign acts on,
whatever else is true of the customer. New customers come next because with less than a horizon of
history their frequency and recency say little. Champions are the top tier of the loyal, and hibernating
(long silent) is told apart from at risk (recently active) before the rest of the high-churn customers fall
into at risk.

A *lapsed regular* (the optional ``lapsed_regular`` column of the predictions, from
:mod:`custseq.scoring.lapse`) has bought regularly and been silent for several of their usual gaps: at risk
whatever the predicted churn.

The top value tier is the empirical upper quantile of ``clv_expected``: a customer is in it when at most
``top_value_share`` (20%) of all customers have an expected value at least as high. Customers tied at the
boundary all fall below it, so the tier never holds more than the share, and equal values (say, all zero)
make no top tier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from custseq.config import SegmentConfig
from custseq.errors import ConfigError, SchemaError

SEGMENTS = (
    "high_value_potential_attrier",
    "new",
    "champion",
    "loyal",
    "hibernating",
    "at_risk",
    "potential_loyalist",
)  # in the order the rules are tried; the last takes everyone the others leave
FEATURE_COLUMNS = ("frequency", "recency", "T")
PREDICTION_COLUMNS = ("customer_id", "churn_probability", "clv_expected")


def assign_segments(
    predictions: pd.DataFrame,
    features: pd.DataFrame,
    cfg: SegmentConfig | None = None,
    *,
    horizon_days: int,
    top_tier: np.ndarray | None = None,
) -> pd.Series:
    """The segment of every customer, by the rules of this module's docstring.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per customer with ``customer_id``, ``churn_probability`` and ``clv_expected``.
    features : pandas.DataFrame
        The same window's features table with ``customer_id``, ``frequency``, ``recency`` and ``T``;
        it may hold other customers and columns too.
    cfg : SegmentConfig, optional
        The thresholds; defaults to ``SegmentConfig()``.
    horizon_days : int
        The prediction horizon, used where ``new_customer_days`` or ``hibernating_days`` is unset.
    top_tier : numpy.ndarray of bool, optional
        Who is in the top value tier, when it was ranked over more customers than these rows (Spark batch
        scoring ranks the whole population); by default :func:`top_value_tier` of these rows.

    Returns
    -------
    pandas.Series
        Named ``segment``, one of :data:`SEGMENTS` per row, with the index of ``predictions``.

    Raises
    ------
    SchemaError
        If a column is missing, a churn probability is not in [0, 1], a value is missing, or a customer of
        ``predictions`` has no row (or more than one) in ``features``.
    ConfigError
        If ``horizon_days`` is below 1.
    """
    cfg = cfg or SegmentConfig()
    if horizon_days < 1:
        raise ConfigError(f"horizon_days must be at least 1, got {horizon_days}")
    check_predictions(predictions)
    rfm = features_by_customer(predictions, features, FEATURE_COLUMNS)
    frequency, recency, days_since_first_purchase = rfm.to_numpy().T  # T: days since the first purchase
    churn = predictions["churn_probability"].to_numpy(dtype=float)
    lapsed = (
        predictions["lapsed_regular"].fillna(False).to_numpy(dtype=bool)
        if "lapsed_regular" in predictions
        else np.zeros(len(predictions), dtype=bool)
    )
    if top_tier is None:
        top_tier = top_value_tier(predictions["clv_expected"], cfg.top_value_share)
    at_risk = (churn > cfg.at_risk_churn) | lapsed
    days_since_last_purchase = days_since_first_purchase - recency
    rules = {
        "high_value_potential_attrier": top_tier & ((churn > cfg.attrier_churn) | lapsed),
        "new": (days_since_first_purchase < _days_or_horizon(cfg.new_customer_days, horizon_days)) & ~lapsed,
        "champion": top_tier & (churn <= cfg.champion_max_churn) & ~lapsed,
        "loyal": (frequency >= cfg.loyal_min_frequency) & ~at_risk,
        "hibernating": at_risk & (days_since_last_purchase >= _days_or_horizon(cfg.hibernating_days, horizon_days)),
        "at_risk": at_risk,
    }
    labels = np.select(list(rules.values()), list(rules), default=SEGMENTS[-1])  # the first rule that holds
    return pd.Series(labels, index=predictions.index, name="segment", dtype=object)


def _days_or_horizon(days: int | None, horizon_days: int) -> int:
    return horizon_days if days is None else days


RANK_DIGITS = 6  # significant digits a ranked value keeps
_SMALLEST_ROUNDED = 1e-290  # below it, the scale 10 ** (RANK_DIGITS - 1 - exponent) would overflow


def for_ranking(values: ArrayLike) -> np.ndarray:
    """``values`` rounded to :data:`RANK_DIGITS` significant digits, so that values equal but for float noise tie.

    The network computes in float32, and its numbers for one customer may differ in the 7th digit with the rows
    scored beside it (seen: two identical customers in one batch, 5.5510969 and 5.5510967, through a BLAS whose
    results depend on a row's position); ranked as they are, the two would take different value scores.
    """
    x = np.asarray(values, dtype=float)
    roundable = np.isfinite(x) & (np.abs(x) > _SMALLEST_ROUNDED)  # 0, inf, NaN and the tiniest stay as they are
    exponent = np.floor(np.log10(np.abs(np.where(roundable, x, 1.0))))
    scale = 10.0 ** (RANK_DIGITS - 1 - exponent)
    return np.where(roundable, np.round(x * scale) / scale, x)


def top_value_tier(values: ArrayLike, share: float) -> np.ndarray:
    """Whether each value is in the top tier: the highest values, at most ``share`` of them.

    Parameters
    ----------
    values : array-like of float
        Expected values, one per customer.
    share : float
        The largest share of customers the tier may hold, in (0, 1].

    Returns
    -------
    numpy.ndarray of bool
        True where the share of values at least as high as this one is at most ``share``; values tied at
        the boundary are all left out.
    """
    values = for_ranking(values)
    at_least_as_high = pd.Series(values).rank(method="max", ascending=False).to_numpy()  # count of v_j >= v_i
    return within_top_share(at_least_as_high, len(values), share)


def within_top_share(at_least_as_high: ArrayLike, n: int, share: float) -> np.ndarray:
    """The top tier of :func:`top_value_tier` from each value's count of values at least as high among ``n``
    (counted here, or over a whole population by Spark batch scoring)."""
    return np.asarray(at_least_as_high) <= np.floor(share * n + 1e-9)  # 1e-9: 0.29 * 100 is 28.999999999999996


def segment_table(predictions: pd.DataFrame, segments: pd.Series | np.ndarray) -> pd.DataFrame:
    """Customers, share, mean churn and expected value per segment, in the rules' order.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per customer with ``churn_probability`` and ``clv_expected``.
    segments : pandas.Series or numpy.ndarray
        The segment of each row of ``predictions``, in the same order (from :func:`assign_segments`).

    Returns
    -------
    pandas.DataFrame
        One row per segment of :data:`SEGMENTS` (empty ones included, with 0 customers and NaN means),
        then any other label in ``segments``, with columns ``segment``, ``customers``, ``share``,
        ``mean_churn_probability``, ``total_clv_expected`` and ``mean_clv_expected``.

    Raises
    ------
    SchemaError
        If ``segments`` does not have one label per row of ``predictions``.
    """
    labels = np.asarray(segments, dtype=object)
    if len(labels) != len(predictions):
        raise SchemaError(f"segments has {len(labels)} labels for {len(predictions)} predictions; give one per row")
    rows = pd.DataFrame(
        {
            "segment": labels,
            "churn": predictions["churn_probability"].to_numpy(dtype=float),
            "value": predictions["clv_expected"].to_numpy(dtype=float),
        }
    )
    order = [*SEGMENTS, *sorted(set(labels) - set(SEGMENTS))]
    table = rows.groupby("segment").agg(
        customers=("churn", "size"),
        mean_churn_probability=("churn", "mean"),
        total_clv_expected=("value", "sum"),
        mean_clv_expected=("value", "mean"),
    )
    table = table.reindex(order).fillna({"customers": 0, "total_clv_expected": 0.0})
    table["customers"] = table["customers"].astype(int)
    table.insert(1, "share", table["customers"] / max(len(labels), 1))
    return table.rename_axis("segment").reset_index()


def check_predictions(predictions: pd.DataFrame) -> None:
    """Check the prediction columns the scores read.

    Raises
    ------
    SchemaError
        If ``customer_id``, ``churn_probability`` or ``clv_expected`` is missing, a churn probability is
        missing or outside [0, 1], or an expected value is missing.
    """
    if missing := [c for c in PREDICTION_COLUMNS if c not in predictions.columns]:
        raise SchemaError(
            f"predictions lack column(s) {missing}; found {list(predictions.columns)}. "
            "Use the predictions written by `custseq predict` or `custseq score`."
        )
    churn = predictions["churn_probability"].to_numpy(dtype=float)
    outside = ~((churn >= 0) & (churn <= 1))  # NaN fails both comparisons
    if outside.any():
        raise SchemaError(
            f"churn_probability must be a probability in [0, 1]; {int(outside.sum())} row(s) are not "
            f"(e.g. {churn[outside][0]})"
        )
    if missing_values := int(predictions["clv_expected"].isna().sum()):
        raise SchemaError(f"clv_expected is missing in {missing_values} row(s); every customer needs a value")


def features_by_customer(predictions: pd.DataFrame, features: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The ``columns`` of ``features`` for each row of ``predictions``, matched by ``customer_id``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        With ``customer_id``; the result follows its rows and index.
    features : pandas.DataFrame
        A features table with ``customer_id`` (unique) and ``columns``.
    columns : tuple of str
        The feature columns to return.

    Returns
    -------
    pandas.DataFrame
        ``columns`` as float, one row per row of ``predictions``, with its index.

    Raises
    ------
    SchemaError
        If a column is missing, a customer id repeats in ``features``, a customer of ``predictions`` has no
        features, or a needed feature value is missing.
    """
    if missing := [c for c in ("customer_id", *columns) if c not in features.columns]:
        raise SchemaError(
            f"the features table lacks column(s) {missing}; found {list(features.columns)}. "
            "Use the features.parquet of the window the predictions were scored on."
        )
    by_id = pd.Index(features["customer_id"])  # one hash of the ids (Series.isin: 4 s per million text ids)
    if not by_id.is_unique:
        repeated = features.loc[features["customer_id"].duplicated(), "customer_id"].iloc[0]
        raise SchemaError(
            f"the features table has more than one row for customer_id {repeated!r}; give one per customer"
        )
    ids = predictions["customer_id"]
    rows = by_id.get_indexer(ids)
    if (absent := rows < 0).any():
        raise SchemaError(
            f"{int(absent.sum())} customer(s) of the predictions have no row in the features table "
            f"(e.g. {ids[absent].iloc[0]!r}); "
            "use the features of the same window"
        )
    matched = features[list(columns)].iloc[rows].astype(float)
    if holes := {c: int(n) for c, n in matched.isna().sum().items() if n}:
        raise SchemaError(f"the features table has missing values in {holes}; every customer needs them")
    return matched.set_axis(predictions.index)
