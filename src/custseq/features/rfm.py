"""RFM and behaviour features as of a cutoff, in DuckDB SQL over rows with ``ts < cutoff`` only.

BTYD convention (as lifetimes' ``summary_data_from_transaction_data`` with daily periods): a purchase
day is a day with at least one non-refund transaction; ``frequency`` = purchase days − 1,
``recency`` = days from the first to the last purchase day, ``T`` = days from the first purchase day
to the as-of day, ``monetary_value`` = mean net amount of the repeat purchase days (0 without repeats).
Reference: Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science 24(2).

Rows are first summed per customer and day (:func:`build_daily`, once, up to the latest cutoff); each
window then aggregates the days before its cutoff. A day's purchase index and the gap to the previous
purchase day depend only on earlier days, so they are computed once too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from custseq.config import FeatureConfig
from custseq.io.engine import exact_sum_sql, fetch_arrow
from custseq.schema import Kind, quote_ident
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window

BTYD_COLUMNS = ("frequency", "recency", "T", "monetary_value")
DISTINCT_COLUMNS = ("product", "category", "channel", "order_id")


@dataclass(frozen=True)
class DailyTables:
    """Per customer and day sums of the transactions before ``until``, and first-seen days of values."""

    daily: str
    first_seen: dict[str, str]  # column -> table of (customer_id, value, day first seen)
    until: dt.datetime
    has_quantity: bool
    has_cost: bool


def build_daily(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, until: dt.datetime, prefix: str = "daily"
) -> DailyTables:
    """Sum transactions before ``until`` per customer and day; index the purchase days."""
    extra = []
    if tx.has("quantity"):
        extra.append(f"coalesce({exact_sum_sql('quantity')}, 0) AS quantity")
    if tx.has("cost"):
        extra.append(f"{exact_sum_sql('amount - coalesce(cost, 0)')} AS margin")
    con.execute(
        f"""
CREATE OR REPLACE TEMP TABLE {prefix}_transactions AS
WITH days AS (
    SELECT customer_id, CAST(ts AS DATE) AS day,
           {exact_sum_sql("amount")} AS net,
           {exact_sum_sql("greatest(amount, 0)")} AS gross,
           coalesce(-{exact_sum_sql("amount", "amount < 0")}, 0) AS refunded,
           count(*) AS n_rows,
           count(*) FILTER (WHERE is_refund) AS n_refund_rows,
           {exact_sum_sql("amount", "NOT is_refund")} AS purchase_amount,
           count(*) FILTER (WHERE NOT is_refund) AS n_purchase_rows,
           max(amount) AS max_amount,
           bool_or(NOT is_refund) AS purchased{"".join(", " + e for e in extra)}
    FROM {tx.sql_name} WHERE ts < $until
    GROUP BY customer_id, day
)
SELECT *,
       CASE WHEN purchased THEN row_number() OVER w END AS k,
       CASE WHEN purchased THEN day - lag(day) OVER w END AS gap
FROM days
WINDOW w AS (PARTITION BY customer_id, purchased ORDER BY day)
""",
        {"until": until},
    )
    first_seen = {}
    for column in (c for c in DISTINCT_COLUMNS if tx.has(c)):
        name = f"{prefix}_first_{column}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT customer_id, min(CAST(ts AS DATE)) AS day "
            f"FROM {tx.sql_name} WHERE ts < $until AND {quote_ident(column)} IS NOT NULL "
            f"GROUP BY customer_id, {quote_ident(column)}",
            {"until": until},
        )
        first_seen[column] = name
    return DailyTables(f"{prefix}_transactions", first_seen, until, tx.has("quantity"), tx.has("cost"))


BTYD_SQL = """
WITH days AS (
    SELECT customer_id, CAST(ts AS DATE) AS day, {net} AS net, bool_or(NOT is_refund) AS purchased
    FROM {tx} WHERE ts < $cutoff
    GROUP BY customer_id, day
)
SELECT customer_id,
       CAST(greatest(count(*) FILTER (WHERE purchased) - 1, 0) AS DOUBLE) AS frequency,
       CAST(coalesce(max(day) FILTER (WHERE purchased) - min(day) FILTER (WHERE purchased), 0) AS DOUBLE) AS recency,
       CAST($as_of_day - coalesce(min(day) FILTER (WHERE purchased), min(day)) AS DOUBLE) AS T,
       coalesce(({net_total} - arg_min(net, day) FILTER (WHERE purchased))
                / nullif(count(*) FILTER (WHERE purchased) - 1, 0), 0) AS monetary_value
FROM days
GROUP BY customer_id
ORDER BY customer_id
"""


def build_btyd_summary(con: duckdb.DuckDBPyConnection, tx: CleanTable, window: Window) -> pa.Table:
    """Only the BTYD summary (frequency, recency, T, monetary_value) as of the window's cutoff.

    The same quantities as :func:`build_features`, in one pass over the rows, for BTYD models and for a
    like-for-like comparison with ``lifetimes.utils.summary_data_from_transaction_data``.
    """
    sql = BTYD_SQL.format(tx=tx.sql_name, net=exact_sum_sql("amount"), net_total=exact_sum_sql("net", "purchased"))
    return fetch_arrow(con, sql, {"cutoff": window.cutoff, "as_of_day": window.as_of})


def build_features(
    con: duckdb.DuckDBPyConnection,
    tx: CleanTable,
    window: Window,
    cfg: FeatureConfig,
    *,
    customers: CleanTable | None = None,
    events: CleanTable | None = None,
    daily: DailyTables | None = None,
) -> pa.Table:
    """One row per customer with a transaction before the cutoff.

    Only rows with ``ts < window.cutoff`` are read. ``daily`` (from :func:`build_daily` with
    ``until >= window.cutoff``) is reused when given. Profile attributes of the customers table are joined
    by key as ``profile_<column>``; a signup after the cutoff is treated as unknown.
    """
    if daily is None or daily.until < window.cutoff:
        daily = build_daily(con, tx, window.cutoff, prefix="daily_single")
    days = _recent_days(cfg, window.horizon_days)
    params: dict = {"cutoff": window.cutoff, "as_of_day": window.as_of, "horizon": window.horizon_days}
    params.update({f"w{d}": d for d in days})
    return fetch_arrow(con, _features_sql(daily, days, customers, events), params)


def _recent_days(cfg: FeatureConfig, horizon: int) -> tuple[int, ...]:
    # The horizon itself always has its own columns (*_last_h), so it is not repeated here.
    return tuple(sorted(set(cfg.recent_windows_days) - {horizon}))


def _features_sql(
    daily: DailyTables, days: tuple[int, ...], customers: CleanTable | None, events: CleanTable | None
) -> str:
    last = "day > $as_of_day - $horizon"
    prev = "day <= $as_of_day - $horizon AND day > $as_of_day - 2 * $horizon"
    aggregates = [
        "sum(n_rows) AS n_transactions",
        f"{exact_sum_sql('net')} AS total_spend",
        f"{exact_sum_sql('gross')} AS gross_spend",
        f"{exact_sum_sql('refunded')} AS refund_amount",
        "sum(n_refund_rows) / sum(n_rows) AS refund_rate",
        f"{exact_sum_sql('purchase_amount')} / nullif(sum(n_purchase_rows), 0) AS avg_purchase_amount",
        "max(max_amount) AS max_amount",
        "min(day) AS first_day",
        "count(*) FILTER (WHERE purchased) AS n_purchase_days",
        "min(day) FILTER (WHERE purchased) AS first_purchase",
        "max(day) FILTER (WHERE purchased) AS last_purchase",
        f"coalesce({exact_sum_sql('net', 'purchased AND k > 1')}"
        " / nullif(count(*) FILTER (WHERE purchased AND k > 1), 0), 0) AS monetary_value",
        "CAST(avg(gap) AS DOUBLE) AS ipt_mean",
        "stddev_samp(gap) AS ipt_std",
        "CAST(max(gap) AS DOUBLE) AS ipt_max",
        "CAST(arg_max(gap, day) FILTER (WHERE purchased) AS DOUBLE) AS ipt_last",
        f"count(*) FILTER (WHERE purchased AND {last}) AS purchase_days_last_h",
        f"count(*) FILTER (WHERE purchased AND {prev}) AS purchase_days_prev_h",
        f"coalesce({exact_sum_sql('net', last)}, 0) AS spend_last_h",
        f"coalesce({exact_sum_sql('net', prev)}, 0) AS spend_prev_h",
    ]
    for d in days:
        aggregates.append(f"count(*) FILTER (WHERE purchased AND day > $as_of_day - $w{d}) AS purchase_days_last_{d}d")
        aggregates.append(f"coalesce({exact_sum_sql('net', f'day > $as_of_day - $w{d}')}, 0) AS spend_last_{d}d")
    if daily.has_quantity:
        aggregates.append(f"{exact_sum_sql('quantity')} AS total_quantity")
    if daily.has_cost:
        aggregates.append(f"{exact_sum_sql('margin')} AS total_margin")
    first_day = "coalesce(r.first_purchase, r.first_day)"
    selects = [
        "r.customer_id",
        "CAST($cutoff AS TIMESTAMP) AS cutoff",
        "CAST(greatest(r.n_purchase_days - 1, 0) AS DOUBLE) AS frequency",
        "CAST(coalesce(r.last_purchase - r.first_purchase, 0) AS DOUBLE) AS recency",
        f"CAST($as_of_day - {first_day} AS DOUBLE) AS T",
        "r.monetary_value",
        f"CAST($as_of_day - {first_day} AS DOUBLE) AS tenure_days",
        "CAST($as_of_day - r.last_purchase AS DOUBLE) AS days_since_last_purchase",
        f"r.total_spend * 30.0 / ($as_of_day - {first_day} + 1) AS spend_per_30d",
        "r.ipt_mean, r.ipt_std, r.ipt_max, r.ipt_last",
        "r.purchase_days_last_h, r.purchase_days_prev_h",
        "r.purchase_days_last_h - r.purchase_days_prev_h AS purchase_trend_h",
        "ln(1 + greatest(r.spend_last_h, 0)) - ln(1 + greatest(r.spend_prev_h, 0)) AS spend_trend_h",
        *(f"r.purchase_days_last_{d}d" for d in days),
        "r.n_transactions, r.total_spend, r.gross_spend, r.refund_amount, r.refund_rate, r.avg_purchase_amount",
        "r.max_amount, r.spend_last_h, r.spend_prev_h",
        *(f"r.spend_last_{d}d" for d in days),
    ]
    joins = []
    for column, table in daily.first_seen.items():
        name = "n_orders" if column == "order_id" else f"n_distinct_{column}"
        joins.append(
            f"LEFT JOIN (SELECT customer_id, count(*) AS n FROM {table} WHERE day < CAST($cutoff AS DATE) "
            f"GROUP BY customer_id) {name} USING (customer_id)"
        )
        selects.append(f"coalesce({name}.n, 0) AS {name}")
    if daily.has_quantity:
        selects.append("r.total_quantity")
    if daily.has_cost:
        selects.append("r.total_margin")
    profile_join, profile_cols = _profile_sql(customers)
    events_join, events_cols = _events_sql(events)
    return f"""
WITH r AS (
    SELECT customer_id, {", ".join(aggregates)}
    FROM {daily.daily} WHERE day < CAST($cutoff AS DATE)
    GROUP BY customer_id
)
SELECT {", ".join(selects)}{profile_cols}{events_cols}
FROM r {" ".join(joins)}{profile_join}{events_join}
ORDER BY r.customer_id
"""


def _profile_sql(customers: CleanTable | None) -> tuple[str, str]:
    if customers is None:
        return "", ""
    cols = []
    if customers.has("signup_ts"):
        cols.append(
            "CASE WHEN c.signup_ts < $cutoff THEN CAST($as_of_day - CAST(c.signup_ts AS DATE) AS DOUBLE) END"
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
           CAST($as_of_day - CAST(max(ts) AS DATE) AS DOUBLE) AS days_since_last_event
    FROM {events.sql_name} WHERE ts < $cutoff GROUP BY customer_id
) e USING (customer_id)"""
    cols = (
        ",\n       coalesce(e.n_events, 0) AS n_events, coalesce(e.n_events_last_30d, 0) AS n_events_last_30d, "
        "coalesce(e.n_distinct_events, 0) AS n_distinct_events, e.days_since_last_event"
    )
    return join, cols
