"""RFM and behaviour features as of a cutoff, in DuckDB SQL over rows with ``ts < cutoff`` only.

BTYD convention (as lifetimes' ``summary_data_from_transaction_data`` with daily periods): a purchase
day is a day with at least one non-refund transaction; ``frequency`` = purchase days − 1,
``recency`` = days from the first to the last purchase day, ``T`` = days from the first purchase day
to the as-of day, ``monetary_value`` = mean net amount of the repeat purchase days (0 without repeats).
Reference: Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science 24(2).

Rows are first summed per customer and day (:func:`build_daily`, once, up to the latest cutoff); each
window then aggregates the days before its cutoff. A day's purchase index and the gap to the previous
purchase day depend only on earlier days, so they are computed once too, as are the line-level reductions
(orders, products, categories, hours of the day). The core columns are always built; the feature groups of
``FeatureConfig.groups`` add theirs (one function per group below, ``GROUP_SQL``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from custseq.config import FeatureConfig, TextConfig
from custseq.features.text import text_feature_sql
from custseq.io.engine import exact_sum_sql, fetch_arrow, fetch_scalar
from custseq.schema import Kind, quote_ident, snake_case
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window

BTYD_COLUMNS = ("frequency", "recency", "T", "monetary_value")
DISTINCT_COLUMNS = ("product", "category", "channel", "order_id")


@dataclass(frozen=True)
class DailyTables:
    """Per customer and day sums of the transactions before ``until``, and the line-level tables built with them.

    ``daily`` has one row per customer and day: sums, the purchase index ``k`` and ``gap``, baskets (orders, or
    the purchase day without ``order_id``) and, with products or categories, per-day counts of their lines
    (see :func:`_value_days_sql`). The other tables are read per window with ``day < cutoff``.
    """

    daily: str
    first_seen: dict[str, str]  # column -> table of (customer_id, value, day first seen)
    until: dt.datetime
    has_quantity: bool
    has_cost: bool
    value_columns: tuple[str, ...] = ()  # product and/or category: their *_lines, *_repeat_lines … are in daily
    category_spend: str | None = None  # (customer_id, value, day, n, spend) of purchase lines with a category
    hours: str | None = None  # (customer_id, day, hour, n) of purchase lines; None: no time of day before until


def build_daily(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, until: dt.datetime, prefix: str = "daily"
) -> DailyTables:
    """Sum transactions before ``until`` per customer and day; index the purchase days.

    Line-level quantities (orders, products, categories, hours) are reduced here once too, so that each
    window only filters these tables by day.
    """
    params = {"until": until}
    extra = []
    if tx.has("quantity"):
        extra.append(f"coalesce({exact_sum_sql('quantity')}, 0) AS quantity")
        extra.append(f"coalesce({exact_sum_sql('quantity', 'NOT is_refund')}, 0) AS purchase_quantity")
    if tx.has("cost"):
        extra.append(f"{exact_sum_sql('amount - coalesce(cost, 0)')} AS margin")
    joins, joined = [], []
    if tx.has("order_id"):
        con.execute(_baskets_sql(tx, f"{prefix}_baskets"), params)
        joins.append(f"LEFT JOIN {prefix}_baskets USING (customer_id, day)")
        joined.append("coalesce(baskets, 0) AS baskets, basket_amount_sq")
    else:  # one basket per purchase day
        joined.append("CAST(purchased AS BIGINT) AS baskets")
        joined.append("CASE WHEN purchased THEN purchase_amount * purchase_amount END AS basket_amount_sq")
    value_columns = tuple(c for c in ("product", "category") if tx.has(c))
    for column in value_columns:
        lines = f"{prefix}_{column}_lines"
        con.execute(_value_lines_sql(tx, column, lines), params)
        con.execute(_value_days_sql(lines, f"{prefix}_{column}_days", column))
        if column == "product":  # categories keep theirs: the favourite category is found per window
            con.execute(f"DROP TABLE {lines}")
        joins.append(f"LEFT JOIN {prefix}_{column}_days USING (customer_id, day)")
        joined.append(f"{prefix}_{column}_days.* EXCLUDE (customer_id, day)")
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
SELECT days.*, {", ".join(joined)},
       CASE WHEN purchased THEN row_number() OVER w END AS k,
       CASE WHEN purchased THEN day - lag(day) OVER w END AS gap
FROM days {" ".join(joins)}
WINDOW w AS (PARTITION BY customer_id, purchased ORDER BY day)
""",
        params,
    )
    first_seen = {}
    for column in (c for c in DISTINCT_COLUMNS if tx.has(c)):
        name = f"{prefix}_first_{column}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT customer_id, min(CAST(ts AS DATE)) AS day "
            f"FROM {tx.sql_name} WHERE ts < $until AND {quote_ident(column)} IS NOT NULL "
            f"GROUP BY customer_id, {quote_ident(column)}",
            params,
        )
        first_seen[column] = name
    return DailyTables(
        f"{prefix}_transactions",
        first_seen,
        until,
        tx.has("quantity"),
        tx.has("cost"),
        value_columns,
        f"{prefix}_category_lines" if "category" in value_columns else None,
        _build_hours(con, tx, until, f"{prefix}_hours"),
    )


def _baskets_sql(tx: CleanTable, name: str) -> str:
    # An order is its purchase lines on one day, so an order whose lines straddle a cutoff is cut there too.
    return f"""
CREATE OR REPLACE TEMP TABLE {name} AS
SELECT customer_id, day, count(*) AS baskets, {exact_sum_sql("amount * amount")} AS basket_amount_sq
FROM (
    SELECT customer_id, CAST(ts AS DATE) AS day, {exact_sum_sql("amount")} AS amount
    FROM {tx.sql_name} WHERE ts < $until AND NOT is_refund
    GROUP BY customer_id, day, order_id
)
GROUP BY customer_id, day
"""


def _value_lines_sql(tx: CleanTable, column: str, name: str) -> str:
    """Purchase lines (n) and their spend per customer, value of ``column`` and day."""
    return f"""
CREATE OR REPLACE TEMP TABLE {name} AS
SELECT customer_id, {quote_ident(column)} AS value, CAST(ts AS DATE) AS day, count(*) AS n,
       {exact_sum_sql("amount")} AS spend
FROM {tx.sql_name} WHERE ts < $until AND NOT is_refund AND {quote_ident(column)} IS NOT NULL
GROUP BY ALL
"""


def _value_days_sql(lines: str, name: str, column: str) -> str:
    """Per customer and day: purchase lines with a value, lines of values bought on an earlier day, values
    bought for the first time, and the day's increment of S = Σ_v c_v·ln c_v.

    c_v is the customer's running count of lines of value v. Summing the increments of the days before a
    cutoff gives S at that cutoff, so the entropy of the lines over values, ln N − S / N with N = Σ_v c_v,
    needs no per-window pass over the lines. Every quantity depends only on the day and earlier days.
    """
    return f"""
CREATE OR REPLACE TEMP TABLE {name} AS
WITH running AS (
    SELECT customer_id, day, n, sum(n) OVER (PARTITION BY customer_id, value ORDER BY day) AS c FROM {lines}
)
SELECT customer_id, day,
       sum(n) AS {column}_lines,
       coalesce(sum(n) FILTER (WHERE c > n), 0) AS {column}_repeat_lines,
       count(*) FILTER (WHERE c = n) AS {column}_new,
       {exact_sum_sql("c * ln(c) - CASE WHEN c > n THEN (c - n) * ln(c - n) ELSE 0 END")} AS {column}_clnc
FROM running
GROUP BY customer_id, day
"""


def _build_hours(con: duckdb.DuckDBPyConnection, tx: CleanTable, until: dt.datetime, name: str) -> str | None:
    """Purchase lines per customer, day and hour, or None when no row before ``until`` has a time of day."""
    con.execute(
        f"""
CREATE OR REPLACE TEMP TABLE {name} AS
SELECT customer_id, CAST(ts AS DATE) AS day, hour(ts) AS hour, count(*) AS n,
       bool_or(CAST(ts AS TIME) <> TIME '00:00:00') AS timed
FROM {tx.sql_name} WHERE ts < $until AND NOT is_refund
GROUP BY ALL
""",
        {"until": until},
    )
    if fetch_scalar(con, f"SELECT coalesce(bool_or(timed), false) FROM {name}"):
        return name
    con.execute(f"DROP TABLE {name}")
    return None


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
    event_types: Sequence[str] = (),
    daily: DailyTables | None = None,
    text: TextConfig | None = None,
) -> pa.Table:
    """One row per customer with a transaction before the cutoff.

    Only rows with ``ts < window.cutoff`` are read. ``daily`` (from :func:`build_daily` with
    ``until >= window.cutoff``) is reused when given. The core columns are always computed, the others per
    group of ``cfg.groups`` (see :data:`custseq.config.FEATURE_GROUPS`). Profile attributes of the customers
    table are joined by key as ``profile_<column>``; a signup after the cutoff is treated as unknown. A column
    that is undefined for a customer (the gaps of a one-purchase customer) is null; the set of columns
    depends only on the settings and on which columns the tables have, never on the window.
    ``event_types`` (the most frequent first, e.g. the fitted vocabulary's) get counts of their own. The
    ``text`` group reads the text columns that :func:`custseq.text.events.with_text_vectors` added to
    ``events`` (settings ``text``, default :class:`TextConfig`).
    """
    if daily is None or daily.until < window.cutoff:
        daily = build_daily(con, tx, window.cutoff, prefix="daily_single")
    groups = set(cfg.groups)
    days = _recent_days(cfg, window.horizon_days) if groups & {"recency", "trends"} else ()
    params: dict = {"cutoff": window.cutoff, "as_of_day": window.as_of, "horizon": window.horizon_days}
    params.update({f"w{d}": d for d in days})  # only the values the query uses: DuckDB refuses others
    parts = [_core(daily)]
    for name, build in GROUP_SQL.items():
        if name in groups:
            parts.append(build(daily, days))
    if "profile" in groups:
        parts.append(profile_part(customers))
    if "events" in groups and events is not None:
        parts.append(events_part(events, daily, event_types[: cfg.max_event_types]))
        params.update({f"event_type_{i}": e for i, e in enumerate(event_types[: cfg.max_event_types])})
    if "text" in groups and (text_sql := text_feature_sql(events, text or TextConfig())) is not None:
        parts.append(SqlParts(selects=list(text_sql.selects), joins=[text_sql.join]))
        params.update(text_sql.params)
    return fetch_arrow(con, _features_sql(daily, parts), params)


def _recent_days(cfg: FeatureConfig, horizon: int) -> tuple[int, ...]:
    # The horizon itself always has its own columns (*_last_h), so it is not repeated here.
    return tuple(sorted(set(cfg.recent_windows_days) - {horizon}))


@dataclass
class SqlParts:
    """A group's share of the feature query.

    ``aggregates`` are per-customer aggregates of the daily rows before the cutoff (CTE ``r``), by name, so
    that groups may share one; ``selects`` are output columns over ``r`` and the ``joins``; ``ctes`` are extra
    common table expressions the joins read.
    """

    aggregates: dict[str, str] = field(default_factory=dict)
    selects: list[str] = field(default_factory=list)
    ctes: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)


def _features_sql(daily: DailyTables, parts: list[SqlParts]) -> str:
    aggregates: dict[str, str] = {}
    for part in parts:
        aggregates.update(part.aggregates)
    ctes = [f"r AS (\n    SELECT customer_id, {', '.join(f'{sql} AS {name}' for name, sql in aggregates.items())}\n"
            f"    FROM {daily.daily} WHERE day < CAST($cutoff AS DATE)\n    GROUP BY customer_id\n)"]  # fmt: skip
    ctes += [cte for part in parts for cte in part.ctes]
    selects = ",\n       ".join(s for part in parts for s in part.selects)
    joins = "\n".join(j for part in parts for j in part.joins)
    return f"WITH {', '.join(ctes)}\nSELECT {selects}\nFROM r\n{joins}\nORDER BY r.customer_id\n"


LAST_H = "day > $as_of_day - $horizon"
PREV_H = "day <= $as_of_day - $horizon AND day > $as_of_day - 2 * $horizon"


def _last(d: int) -> str:
    return f"day > $as_of_day - $w{d}"


def _prev(d: int) -> str:
    return f"day <= $as_of_day - $w{d} AND day > $as_of_day - 2 * $w{d}"


def _period_aggregates(suffix: str, where: str, rows: bool = True) -> dict[str, str]:
    """Purchase days, net spend and (``rows``) transactions of the days matching ``where``."""
    aggregates = {
        f"purchase_days_{suffix}": f"count(*) FILTER (WHERE purchased AND {where})",
        f"spend_{suffix}": f"coalesce({exact_sum_sql('net', where)}, 0)",
    }
    if rows:
        aggregates[f"transactions_{suffix}"] = f"CAST(coalesce(sum(n_rows) FILTER (WHERE {where}), 0) AS BIGINT)"
    return aggregates


def _core(daily: DailyTables) -> SqlParts:
    """BTYD summary, tenure, totals, the horizon's last and previous period, orders and channels."""
    aggregates = {
        "n_transactions": "CAST(sum(n_rows) AS BIGINT)",
        "total_spend": exact_sum_sql("net"),
        "gross_spend": exact_sum_sql("gross"),
        "avg_purchase_amount": f"{exact_sum_sql('purchase_amount')} / nullif(sum(n_purchase_rows), 0)",
        "max_amount": "max(max_amount)",
        "first_day": "min(day)",
        "n_purchase_days": "count(*) FILTER (WHERE purchased)",
        "first_purchase": "min(day) FILTER (WHERE purchased)",
        "last_purchase": "max(day) FILTER (WHERE purchased)",
        "monetary_value": f"coalesce({exact_sum_sql('net', 'purchased AND k > 1')}"
        " / nullif(count(*) FILTER (WHERE purchased AND k > 1), 0), 0)",
        **_period_aggregates("last_h", LAST_H, rows=False),
        **_period_aggregates("prev_h", PREV_H, rows=False),
    }
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
        "r.purchase_days_last_h, r.purchase_days_prev_h",
        "r.n_transactions, r.total_spend, r.gross_spend, r.avg_purchase_amount, r.max_amount",
        "r.spend_last_h, r.spend_prev_h",
    ]
    if daily.has_quantity:
        aggregates["total_quantity"] = exact_sum_sql("quantity")
        selects.append("r.total_quantity")
    if daily.has_cost:
        aggregates["total_margin"] = exact_sum_sql("margin")
        selects.append("r.total_margin")
    part = SqlParts(aggregates, selects)
    for column in ("order_id", "channel"):
        if column in daily.first_seen:
            _add_distinct(part, daily, column, "n_orders" if column == "order_id" else f"n_distinct_{column}")
    return part


def _add_distinct(part: SqlParts, daily: DailyTables, column: str, name: str) -> None:
    part.joins.append(
        f"LEFT JOIN (SELECT customer_id, count(*) AS n FROM {daily.first_seen[column]} "
        f"WHERE day < CAST($cutoff AS DATE) GROUP BY customer_id) {name} USING (customer_id)"
    )
    part.selects.append(f"coalesce({name}.n, 0) AS {name}")


def _recency(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Purchase days, spend and transactions (rows) in the last N days; the horizon's are core but rows."""
    part = SqlParts(_period_aggregates("last_h", LAST_H), ["r.transactions_last_h"])
    for d in days:
        part.aggregates.update(_period_aggregates(f"last_{d}d", _last(d)))
        part.selects += [f"r.{kind}_last_{d}d" for kind in ("purchase_days", "spend", "transactions")]
    return part


def _trends(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Last N days against the N days before: purchase days difference and log-ratio of net spend."""
    part = SqlParts()
    for suffix, last, prev in (("h", LAST_H, PREV_H), *((f"{d}d", _last(d), _prev(d)) for d in days)):
        part.aggregates.update(_period_aggregates(f"last_{suffix}", last, rows=False))
        part.aggregates.update(_period_aggregates(f"prev_{suffix}", prev, rows=False))
        part.selects += [
            f"r.purchase_days_last_{suffix} - r.purchase_days_prev_{suffix} AS purchase_trend_{suffix}",
            f"ln(1 + greatest(r.spend_last_{suffix}, 0)) - ln(1 + greatest(r.spend_prev_{suffix}, 0))"
            f" AS spend_trend_{suffix}",
        ]
    return part


def _timing(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Gaps between consecutive purchase days; all null for a customer with one purchase day."""
    aggregates = {
        "ipt_mean": "CAST(avg(gap) AS DOUBLE)",
        # from exact integer sums (gaps are whole days): stddev_samp combines the threads' partial states in
        # whatever order they finish, so its last bits varied from run to run
        "ipt_std": "CASE WHEN count(gap) > 1 THEN sqrt(CAST(count(gap) * sum(gap * gap) - sum(gap) * sum(gap)"
        " AS DOUBLE) / (count(gap) * (count(gap) - 1.0))) END",
        "ipt_max": "CAST(max(gap) AS DOUBLE)",
        "ipt_last": "CAST(arg_max(gap, day) FILTER (WHERE purchased) AS DOUBLE)",
        "ipt_median": "quantile_cont(gap, 0.5)",
        "ipt_recent_mean": "list_avg(arg_max(gap, day, 3) FILTER (WHERE gap IS NOT NULL))",
        "last_purchase": "max(day) FILTER (WHERE purchased)",
    }
    selects = [
        "r.ipt_mean, r.ipt_std, r.ipt_max, r.ipt_last, r.ipt_median, r.ipt_recent_mean",
        "r.ipt_std / r.ipt_mean AS ipt_cv",
        # How many usual gaps the customer has been silent: a regular buyer gone quiet stands out.
        "($as_of_day - r.last_purchase) / r.ipt_mean AS overdue_ratio",
    ]
    return SqlParts(aggregates, selects)


def _entropy_sql(counts: list[str], total: str) -> str:
    """Shannon entropy (nats) of the shares count / total; null when the total is 0."""
    # Σ c·ln(total / c) / total: the same as −Σ p·ln p, without a −0.0 for a single value.
    terms = " + ".join(f"CASE WHEN {c} > 0 THEN {c} * ln({total} / {c}) ELSE 0 END" for c in counts)
    return f"CASE WHEN {total} > 0 THEN ({terms}) / {total} END"


def _calendar(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Concentration of purchase days on weekdays and of purchase lines on hours of the day."""
    weekdays = [f"r.weekday_{i}" for i in range(1, 8)]
    part = SqlParts(
        {f"weekday_{i}": f"count(*) FILTER (WHERE purchased AND isodow(day) = {i})" for i in range(1, 8)},
        [
            f"greatest({', '.join(weekdays)}) / nullif(r.n_purchase_days, 0) AS weekday_modal_share",
            f"{_entropy_sql(weekdays, 'r.n_purchase_days')} AS weekday_entropy",
        ],
    )
    part.aggregates["n_purchase_days"] = "count(*) FILTER (WHERE purchased)"
    if daily.hours is None:  # no timestamp before the latest cutoff has a time of day, so none before this one
        part.selects += ["CAST(NULL AS DOUBLE) AS hour_modal_share", "CAST(NULL AS DOUBLE) AS hour_entropy"]
        return part
    part.ctes.append(
        f"""hour_counts AS (
    SELECT customer_id, hour, sum(n) AS n FROM {daily.hours} WHERE day < CAST($cutoff AS DATE) GROUP BY ALL
), hours AS (
    SELECT customer_id, max(n) / sum(n) AS modal_share,
           greatest(ln(sum(n)) - {exact_sum_sql("n * ln(n)")} / sum(n), 0) AS entropy
    FROM hour_counts GROUP BY customer_id
)"""
    )
    part.joins.append("LEFT JOIN hours USING (customer_id)")
    # Decided per window from the rows before its cutoff: midnight everywhere means dates without times.
    timed = f"(SELECT coalesce(bool_or(timed), false) FROM {daily.hours} WHERE day < CAST($cutoff AS DATE))"
    part.selects += [
        f"CASE WHEN {timed} THEN hours.modal_share END AS hour_modal_share",
        f"CASE WHEN {timed} THEN hours.entropy END AS hour_entropy",
    ]
    return part


def _std_sql(n: str, total: str, squares: str) -> str:
    """Sample standard deviation from a count and exact sums (reproducible, unlike a float aggregate)."""
    return f"CASE WHEN {n} > 1 THEN sqrt(greatest({squares} - {total} * {total} / {n}, 0) / ({n} - 1)) END"


def _spend(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Spread of the net spend over purchase days."""
    aggregates = {
        "n_purchase_days": "count(*) FILTER (WHERE purchased)",
        "purchase_day_spend": exact_sum_sql("net", "purchased"),
        "purchase_day_spend_sq": exact_sum_sql("net * net", "purchased"),
        "spend_recent_mean": "list_avg(arg_max(net, day, 3) FILTER (WHERE purchased))",
        "max_day_spend": "max(net) FILTER (WHERE purchased)",
    }
    std = _std_sql("r.n_purchase_days", "r.purchase_day_spend", "r.purchase_day_spend_sq")
    selects = [
        f"{std} AS spend_std_per_day",
        f"{std} / nullif(abs(r.purchase_day_spend / r.n_purchase_days), 0) AS spend_cv",
        "r.spend_recent_mean, r.max_day_spend",
    ]
    return SqlParts(aggregates, selects)


def _basket(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Purchase lines per order (per purchase day without order_id): amount, its spread, lines, quantity."""
    aggregates = {
        "baskets": "sum(baskets)",
        "basket_amount": exact_sum_sql("purchase_amount"),
        "basket_amount_sq": exact_sum_sql("basket_amount_sq"),
        "basket_lines": "sum(n_purchase_rows)",
    }
    selects = [
        "r.basket_amount / nullif(r.baskets, 0) AS basket_mean_amount",
        f"{_std_sql('r.baskets', 'r.basket_amount', 'r.basket_amount_sq')} AS basket_std_amount",
        "r.basket_lines / nullif(r.baskets, 0) AS basket_mean_lines",
    ]
    if daily.has_quantity:
        aggregates["basket_quantity"] = exact_sum_sql("purchase_quantity")
        selects.append("r.basket_quantity / nullif(r.baskets, 0) AS basket_mean_quantity")
    return SqlParts(aggregates, selects)


def _products(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    """Breadth, loyalty and novelty of the products bought; concentration on categories."""
    part = SqlParts()
    for column in ("product", "category"):
        if column in daily.first_seen:
            _add_distinct(part, daily, column, f"n_distinct_{column}")
        if column not in daily.value_columns:
            continue
        lines, clnc = f"r.{column}_lines", f"r.{column}_clnc"
        part.aggregates[f"{column}_lines"] = f"sum({column}_lines)"
        part.aggregates[f"{column}_clnc"] = exact_sum_sql(f"{column}_clnc")
        # Entropy of the lines over values, ln N − Σ c·ln c / N (see _value_days_sql).
        part.selects.append(f"greatest(ln({lines}) - {clnc} / {lines}, 0) AS {column}_entropy")
    if "product" in daily.value_columns:
        part.aggregates["product_repeat_lines"] = "sum(product_repeat_lines)"
        part.aggregates["last_new_product"] = "max(day) FILTER (WHERE product_new > 0)"
        part.selects += [
            "r.product_repeat_lines / r.product_lines AS product_repeat_rate",
            "CAST($as_of_day - r.last_new_product AS DOUBLE) AS days_since_new_product",
        ]
    if daily.category_spend is not None:
        part.ctes.append(
            f"""category_spend AS (
    SELECT customer_id, value, {exact_sum_sql("spend")} AS spend
    FROM {daily.category_spend} WHERE day < CAST($cutoff AS DATE) GROUP BY ALL
), categories AS (
    SELECT customer_id, max(spend) / nullif({exact_sum_sql("spend")}, 0) AS favourite_category_share
    FROM category_spend GROUP BY customer_id
)"""
        )
        part.joins.append("LEFT JOIN categories USING (customer_id)")
        part.selects.append("categories.favourite_category_share")
    return part


def _refunds(daily: DailyTables, days: tuple[int, ...]) -> SqlParts:
    return SqlParts(
        {"refund_amount": exact_sum_sql("refunded"), "refund_rate": "sum(n_refund_rows) / sum(n_rows)"},
        ["r.refund_amount, r.refund_rate"],
    )


GROUP_SQL: dict[str, Callable[[DailyTables, tuple[int, ...]], SqlParts]] = {
    "recency": _recency,
    "trends": _trends,
    "timing": _timing,
    "calendar": _calendar,
    "spend": _spend,
    "basket": _basket,
    "products": _products,
    "refunds": _refunds,
}


def profile_part(customers: CleanTable | None) -> SqlParts:
    """Profile attributes joined by key (``profile_<column>``) and the days since signup."""
    if customers is None:
        return SqlParts()
    cols = []
    if customers.has("signup_ts"):
        cols.append(
            "CASE WHEN c.signup_ts < $cutoff THEN CAST($as_of_day - CAST(c.signup_ts AS DATE) AS DOUBLE) END"
            " AS days_since_signup"
        )
    for name in customers.columns_of(Kind.NUMBER, Kind.CATEGORY, Kind.BOOLEAN):
        cols.append(f"c.{quote_ident(name)} AS {quote_ident('profile_' + name)}")
    if not cols:
        return SqlParts()
    return SqlParts(selects=cols, joins=[f"LEFT JOIN {customers.sql_name} c USING (customer_id)"])


def events_part(events: CleanTable, daily: DailyTables, event_types: Sequence[str]) -> SqlParts:
    """Counts and recency of all events and of each of ``event_types`` (same columns in every window), and the
    events since the last purchase day (browsing without buying)."""
    per_type, cols = [], []
    recent_h = "ts >= $cutoff - to_days(CAST($horizon AS INTEGER))"
    after_last_purchase = "lp.last_day IS NULL OR CAST(ts AS DATE) > lp.last_day"  # no purchase: every event
    for i, name in enumerate(event_column_names(event_types)):
        is_type = f"event = $event_type_{i}"
        per_type += [
            f"count(*) FILTER (WHERE {is_type}) AS {name}_n",
            f"count(*) FILTER (WHERE {is_type} AND ts >= $cutoff - INTERVAL 30 DAY) AS {name}_last_30d",
            f"count(*) FILTER (WHERE {is_type} AND {recent_h}) AS {name}_last_h",
            f"CAST($as_of_day - CAST(max(ts) FILTER (WHERE {is_type}) AS DATE) AS DOUBLE) AS days_since_last_{name}",
        ]
        cols += [f"coalesce(e.{name}_{w}, 0) AS {name}_{w}" for w in ("n", "last_30d", "last_h")]
        cols.append(f"e.days_since_last_{name}")
    extra = "".join(f",\n           {sql}" for sql in per_type)
    join = f"""LEFT JOIN (
    SELECT ev.customer_id, count(*) AS n_events,
           count(*) FILTER (WHERE ts >= $cutoff - INTERVAL 30 DAY) AS n_events_last_30d,
           count(*) FILTER (WHERE {recent_h}) AS n_events_last_h,
           count(DISTINCT event) AS n_distinct_events,
           CAST($as_of_day - CAST(max(ts) AS DATE) AS DOUBLE) AS days_since_last_event,
           count(*) FILTER (WHERE {after_last_purchase}) AS events_since_last_purchase{extra}
    FROM {events.sql_name} ev
    LEFT JOIN (
        SELECT customer_id, max(day) AS last_day FROM {daily.daily} WHERE day < CAST($cutoff AS DATE)
        GROUP BY customer_id
    ) lp USING (customer_id)
    WHERE ts < $cutoff GROUP BY ev.customer_id
) e USING (customer_id)"""
    cols = [
        "coalesce(e.n_events, 0) AS n_events, coalesce(e.n_events_last_30d, 0) AS n_events_last_30d",
        "coalesce(e.n_events_last_h, 0) AS n_events_last_h",
        "coalesce(e.n_distinct_events, 0) AS n_distinct_events, e.days_since_last_event",
        "coalesce(e.events_since_last_purchase, 0) AS events_since_last_purchase",
        *cols,
    ]
    return SqlParts(selects=cols, joins=[join])


def event_column_names(event_types: Sequence[str]) -> list[str]:
    """Column prefixes ``event_<type>`` for event types, made unique (``Page View`` and ``page-view`` differ)."""
    names: list[str] = []
    for event in event_types:
        base = f"event_{snake_case(event)}"[:40]
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names
