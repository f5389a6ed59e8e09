"""Labels of a window: did the customer buy in [cutoff, cutoff + H), and what net value came in.

With :mod:`custseq.windows`, the only code that reads rows at or after a cutoff.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from custseq.io.engine import exact_sum_sql, fetch_arrow
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window

LABELS_SQL = """
WITH history AS (
    {population}
), future AS (
    SELECT customer_id,
           count(DISTINCT CASE WHEN NOT is_refund THEN CAST(ts AS DATE) END) AS purchase_days,
           {value} AS net_value
    FROM {tx}
    WHERE ts >= $cutoff AND ts < $end
    GROUP BY customer_id
)
SELECT h.customer_id,
       CAST($cutoff AS TIMESTAMP) AS cutoff,
       coalesce(f.purchase_days, 0) = 0 AS churned,
       CAST(coalesce(f.purchase_days, 0) AS INTEGER) AS purchases,
       CASE WHEN coalesce(f.purchase_days, 0) = 0 THEN 0.0 ELSE coalesce(f.net_value, 0.0) END AS value
FROM history h LEFT JOIN future f USING (customer_id)
ORDER BY h.customer_id
"""


def build_labels(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, window: Window, *, population: str | None = None
) -> pa.Table:
    """Labels of every customer with a transaction before the window's cutoff (or of ``population``, a query of
    ``customer_id`` that may read ``$cutoff``, e.g. the prospects of :mod:`custseq.features.prospects`).

    ``churned``: no purchase (non-refund transaction) in the horizon. ``purchases``: distinct purchase
    days in the horizon. ``value``: net amount in the horizon, refunds netted, minus cost when a cost
    column is mapped (margin); zero for churners.
    """
    value = exact_sum_sql("amount - coalesce(cost, 0)" if tx.has("cost") else "amount")
    population = population or f"SELECT DISTINCT customer_id FROM {tx.sql_name} WHERE ts < $cutoff"
    sql = LABELS_SQL.format(tx=tx.sql_name, value=value, population=population)
    return fetch_arrow(con, sql, {"cutoff": window.cutoff, "end": window.end})
