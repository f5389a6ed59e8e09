"""RFM and behaviour features as of a cutoff, in DuckDB SQL over rows with ``ts < cutoff`` only.

BTYD convention (as lifetimes' ``summary_data_from_transaction_data`` with daily periods): a purchase
day is a day with at least one non-refund transaction; ``frequency`` = purchase days − 1,
``recency`` = days from the first to the last purchase day, ``T`` = days from the first purchase day
to the as-of day, ``monetary_value`` = mean net amount of the repeat purchase days (0 without repeats).
Reference: Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science 24(2).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from custseq.config import FeatureConfig
from custseq.io.engine import fetch_arrow
from custseq.schema import Kind, quote_ident
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window

BTYD_COLUMNS = ("frequency", "recency", "T", "monetary_value")


def build_features(
    con: duckdb.DuckDBPyConnection,
    tx: CleanTable,
    window: Window,
    cfg: FeatureConfig,
    *,
    customers: CleanTable | None = None,
    events: CleanTable | None = None,
) -> pa.Table:
    """One row per customer with a transaction before the cutoff; columns documented in :data:`FEATURES_DOC`.

    Only rows with ``ts < window.cutoff`` are read. Profile attributes of the customers table are joined
    by key as ``profile_<column>``; a signup after the cutoff is treated as unknown.
    """
    days = _recent_days(cfg, window.horizon_days)
    params: dict = {"cutoff": window.cutoff, "as_of_day": window.as_of, "horizon": window.horizon_days}
    params.update({f"w{d}": d for d in days})
    sql = _features_sql(tx, days, window.horizon_days, customers, events)
    return fetch_arrow(con, sql, params)


def _recent_days(cfg: FeatureConfig, horizon: int) -> tuple[int, ...]:
    # The horizon itself always has its own columns (*_last_h), so it is not repeated here.
    return tuple(sorted(set(cfg.recent_windows_days) - {horizon}))


def _features_sql(
    tx: CleanTable,
    days: tuple[int, ...],
    horizon: int,
    customers: CleanTable | None,
    events: CleanTable | None,
) -> str:
    recent = []
    for d in days:
        recent.append(f"count(*) FILTER (WHERE day > $as_of_day - $w{d}) AS purchase_days_last_{d}d")
    recent_spend = [
        f"coalesce(sum(amount) FILTER (WHERE day > $as_of_day - $w{d}), 0) AS spend_last_{d}d" for d in days
    ]
    diversity = [
        f"count(DISTINCT {quote_ident(c)}) AS n_distinct_{c}" for c in ("product", "category", "channel") if tx.has(c)
    ]
    quantity = ["coalesce(sum(quantity), 0) AS total_quantity"] if tx.has("quantity") else []
    orders = ["count(DISTINCT order_id) AS n_orders"] if tx.has("order_id") else []
    margin = ["coalesce(sum(amount - coalesce(cost, 0)), 0) AS total_margin"] if tx.has("cost") else []
    row_feats = ",\n        ".join(
        [
            "count(*) AS n_transactions",
            "sum(amount) AS total_spend",
            "sum(greatest(amount, 0)) AS gross_spend",
            "coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS refund_amount",
            "avg(CAST(is_refund AS DOUBLE)) AS refund_rate",
            "avg(amount) FILTER (WHERE NOT is_refund) AS avg_purchase_amount",
            "max(amount) AS max_amount",
            "min(day) AS first_day",
            "coalesce(sum(amount) FILTER (WHERE day > $as_of_day - $horizon), 0) AS spend_last_h",
            "coalesce(sum(amount) FILTER (WHERE day <= $as_of_day - $horizon AND day > $as_of_day - 2 * $horizon), 0)"
            " AS spend_prev_h",
            *recent_spend,
            *diversity,
            *quantity,
            *orders,
            *margin,
        ]
    )
    purchase_feats = ",\n        ".join(
        [
            "count(*) - 1 AS frequency",
            "max(day) - min(day) AS recency",
            "$as_of_day - min(day) AS T",
            "coalesce(avg(net) FILTER (WHERE k > 1), 0) AS monetary_value",
            "$as_of_day - max(day) AS days_since_last_purchase",
            "avg(gap) AS ipt_mean",
            "stddev_samp(gap) AS ipt_std",
            "max(gap) AS ipt_max",
            "max(gap) FILTER (WHERE k = n) AS ipt_last",
            "count(*) FILTER (WHERE day > $as_of_day - $horizon) AS purchase_days_last_h",
            "count(*) FILTER (WHERE day <= $as_of_day - $horizon AND day > $as_of_day - 2 * $horizon)"
            " AS purchase_days_prev_h",
            *recent,
        ]
    )
    profile_join, profile_cols = _profile_sql(customers)
    events_join, events_cols = _events_sql(events)
    return f"""
WITH tx AS (
    SELECT *, CAST(ts AS DATE) AS day FROM {tx.sql_name} WHERE ts < $cutoff
), daily AS (
    SELECT customer_id, day, sum(amount) AS net, bool_or(NOT is_refund) AS purchased
    FROM tx GROUP BY customer_id, day
), purchase_days AS (
    SELECT customer_id, day, net,
           row_number() OVER w AS k,
           count(*) OVER (PARTITION BY customer_id) AS n,
           day - lag(day) OVER w AS gap
    FROM daily WHERE purchased
    WINDOW w AS (PARTITION BY customer_id ORDER BY day)
), per_row AS (
    SELECT customer_id,
        {row_feats}
    FROM tx GROUP BY customer_id
), per_purchase_day AS (
    SELECT customer_id,
        {purchase_feats}
    FROM purchase_days GROUP BY customer_id
)
SELECT r.customer_id,
       CAST($cutoff AS TIMESTAMP) AS cutoff,
       CAST(coalesce(p.frequency, 0) AS DOUBLE) AS frequency,
       CAST(coalesce(p.recency, 0) AS DOUBLE) AS recency,
       CAST(coalesce(p.T, $as_of_day - r.first_day) AS DOUBLE) AS T,
       coalesce(p.monetary_value, 0) AS monetary_value,
       CAST(coalesce(p.T, $as_of_day - r.first_day) AS DOUBLE) AS tenure_days,
       CAST(p.days_since_last_purchase AS DOUBLE) AS days_since_last_purchase,
       r.total_spend * 30.0 / (coalesce(p.T, $as_of_day - r.first_day) + 1) AS spend_per_30d,
       CAST(p.ipt_mean AS DOUBLE) AS ipt_mean, p.ipt_std, CAST(p.ipt_max AS DOUBLE) AS ipt_max,
       CAST(p.ipt_last AS DOUBLE) AS ipt_last,
       coalesce(p.purchase_days_last_h, 0) AS purchase_days_last_h,
       coalesce(p.purchase_days_prev_h, 0) AS purchase_days_prev_h,
       coalesce(p.purchase_days_last_h, 0) - coalesce(p.purchase_days_prev_h, 0) AS purchase_trend_h,
       ln(1 + greatest(r.spend_last_h, 0)) - ln(1 + greatest(r.spend_prev_h, 0)) AS spend_trend_h,
       {", ".join(f"coalesce(p.purchase_days_last_{d}d, 0) AS purchase_days_last_{d}d" for d in days)},
       r.* EXCLUDE (customer_id, first_day){profile_cols}{events_cols}
FROM per_row r
LEFT JOIN per_purchase_day p USING (customer_id){profile_join}{events_join}
ORDER BY r.customer_id
"""


def _profile_sql(customers: CleanTable | None) -> tuple[str, str]:
    if customers is None:
        return "", ""
    cols = []
    if customers.has("signup_ts"):
        cols.append(
            "CASE WHEN c.signup_ts < $cutoff THEN CAST(date_diff('day', c.signup_ts, $cutoff) AS DOUBLE) END"
            " AS days_since_signup"
        )
    for name in customers.columns_of(Kind.NUMBER, Kind.CATEGORY, Kind.BOOLEAN):
        cols.append(f"c.{quote_ident(name)} AS {quote_ident('profile_' + name)}")
    if not cols:
        return "", ""
    return f"\nLEFT JOIN {customers.sql_name} c USING (customer_id)", ",\n       " + ", ".join(cols)


def _events_sql(events: CleanTable | None) -> tuple[str, str]:
    if events is None:
        return "", ""
    join = f"""
LEFT JOIN (
    SELECT customer_id, count(*) AS n_events,
           count(*) FILTER (WHERE ts >= $cutoff - INTERVAL 30 DAY) AS n_events_last_30d,
           count(DISTINCT event) AS n_distinct_events,
           CAST(date_diff('day', max(ts), $cutoff) AS DOUBLE) AS days_since_last_event
    FROM {events.sql_name} WHERE ts < $cutoff GROUP BY customer_id
) e USING (customer_id)"""
    cols = (
        ",\n       coalesce(e.n_events, 0) AS n_events, coalesce(e.n_events_last_30d, 0) AS n_events_last_30d, "
        "coalesce(e.n_distinct_events, 0) AS n_distinct_events, e.days_since_last_event"
    )
    return join, cols
