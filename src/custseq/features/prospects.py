"""Prospects: people with behaviour events before a cutoff and no transaction before it.

They have no purchase history, so the customers' features, sequences and models do not apply; they get the
events and profile columns of :mod:`custseq.features.rfm` (the same SQL), and their label is whether they
make a first purchase in the horizon (:func:`custseq.labels.build_labels` over this population).
Only rows with ``ts < cutoff`` are read for the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from custseq.config import FeatureConfig, TextConfig
from custseq.features.rfm import DailyTables, SqlParts, build_daily, events_part, profile_part
from custseq.features.text import text_feature_sql
from custseq.io.engine import fetch_arrow, fetch_scalar
from custseq.labels import build_labels
from custseq.validate.quarantine import CleanTable
from custseq.windows import Window


def prospects_sql(tx: CleanTable, events: CleanTable) -> str:
    """Query of the prospects' ids at ``$cutoff``: an event before it, no transaction (of any kind) before it."""
    return (
        f"SELECT DISTINCT ev.customer_id FROM {events.sql_name} ev WHERE ev.ts < $cutoff AND NOT EXISTS "
        f"(SELECT 1 FROM {tx.sql_name} t WHERE t.customer_id = ev.customer_id AND t.ts < $cutoff)"
    )


def count_prospects(con: duckdb.DuckDBPyConnection, tx: CleanTable, events: CleanTable, window: Window) -> int:
    return int(fetch_scalar(con, f"SELECT count(*) FROM ({prospects_sql(tx, events)})", {"cutoff": window.cutoff}))


def build_prospect_features(
    con: duckdb.DuckDBPyConnection,
    tx: CleanTable,
    events: CleanTable,
    window: Window,
    cfg: FeatureConfig,
    daily: DailyTables,
    *,
    customers: CleanTable | None = None,
    event_types: Sequence[str] = (),
    text: TextConfig | None = None,
) -> pa.Table:
    """One row per prospect at the window's cutoff: ``customer_id``, ``cutoff``, the events columns and, with a
    customers table and event texts, the profile and text columns (named as in the customers' features)."""
    types = tuple(event_types[: cfg.max_event_types])
    parts = [events_part(events, daily, types)]
    params: dict = {}
    if "profile" in cfg.groups:
        parts.append(profile_part(customers))
    if "text" in cfg.groups and (text_sql := text_feature_sql(events, text or TextConfig())) is not None:
        parts.append(SqlParts(selects=list(text_sql.selects), joins=[text_sql.join]))
        params.update(text_sql.params)
    selects = ",\n       ".join(s for part in parts for s in part.selects)
    joins = "\n".join(j for part in parts for j in part.joins)
    sql = (
        f"WITH r AS ({prospects_sql(tx, events)})\n"
        f"SELECT r.customer_id, CAST($cutoff AS TIMESTAMP) AS cutoff,\n       {selects}\nFROM r\n{joins}\n"
        "ORDER BY r.customer_id"
    )
    params.update({"cutoff": window.cutoff, "as_of_day": window.as_of, "horizon": window.horizon_days})
    params.update({f"event_type_{i}": e for i, e in enumerate(types)})
    return fetch_arrow(con, sql, params)


def build_prospect_labels(
    con: duckdb.DuckDBPyConnection, tx: CleanTable, events: CleanTable, window: Window
) -> pa.Table:
    """``churned`` = no first purchase in the horizon; ``value`` = net value bought in it (as for customers)."""
    return build_labels(con, tx, window, population=prospects_sql(tx, events))


def prospects_table(
    con: duckdb.DuckDBPyConnection,
    window: Window,
    tx: CleanTable,
    ev: CleanTable,
    cust: CleanTable | None,
    daily: DailyTables | None,
    types: Sequence[str],
    *,
    features: FeatureConfig,
    text: TextConfig | None,
    labelled: bool,
) -> pa.Table:
    """The window's prospects (events, no purchase before the cutoff): features, and labels when ``labelled``."""
    if daily is None or daily.until < window.cutoff:
        daily = build_daily(con, tx, window.cutoff, prefix="daily_prospects")
    table = build_prospect_features(con, tx, ev, window, features, daily, customers=cust, event_types=types, text=text)
    if labelled:
        labels = build_prospect_labels(con, tx, ev, window).select(["customer_id", "churned", "purchases", "value"])
        table = table.join(labels, "customer_id").sort_by("customer_id")
    return table
