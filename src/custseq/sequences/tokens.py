"""Tokens: what one position of a customer's sequence is.

A token is one transaction (``line`` mode), one order with its lines aggregated (``order`` mode, the
default when an order id is mapped: it measured better and cheaper than line items), or one behaviour
event. Transactions and events interleave in one sequence, told apart by ``token_type``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from custseq.errors import ConfigError
from custseq.schema import TOKEN_TYPES, Kind, quote_ident
from custseq.validate.quarantine import CleanTable

TX_CATEGORICAL = ("product", "category", "channel", "currency")
TX_NUMERIC = ("amount", "quantity", "cost")
SUMMED_IN_ORDER = ("amount", "quantity", "cost")


@dataclass(frozen=True)
class Field:
    """One per-token field: its name in the sequence, where it comes from, and its kind."""

    name: str
    table: str  # "transactions" or "events"
    column: str  # column of the clean (encoded) table
    kind: str  # "category" or "number"


@dataclass(frozen=True)
class TokenLayout:
    """The fields of a token and how tokens are formed."""

    token: str  # "order" or "line"
    fields: tuple[Field, ...]
    has_events: bool

    def categorical(self, table: str | None = None) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind == "category" and table in (None, f.table))

    def numeric(self, table: str | None = None) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind == "number" and table in (None, f.table))


def layout_for(tx: CleanTable, events: CleanTable | None, token: str) -> TokenLayout:
    """Choose the token fields from the clean tables' columns (identifiers come from the tables' kinds)."""
    mode = ("order" if tx.has("order_id") else "line") if token == "auto" else token
    if mode == "order" and not tx.has("order_id"):
        raise ConfigError(
            "token = order (--token order) needs an order_id column, and the transactions have none; map one with "
            "--column order_id=YOUR_COLUMN, or use --token line (one token per row) or auto"
        )
    fields: list[Field] = []
    tx_extras_cat = [c for c in tx.columns_of(Kind.CATEGORY) if c not in TX_CATEGORICAL]
    tx_extras_num = [c for c in tx.columns_of(Kind.NUMBER) if c not in TX_NUMERIC]
    for c in [*(c for c in TX_CATEGORICAL if tx.has(c)), *tx_extras_cat]:
        fields.append(Field(c, "transactions", c, "category"))
    for c in [*(c for c in TX_NUMERIC if tx.has(c)), *tx_extras_num]:
        fields.append(Field(c, "transactions", c, "number"))
    if mode == "order":
        fields.append(Field("n_lines", "transactions", "n_lines", "number"))
    if events is not None:
        fields.append(Field("event", "events", "event", "category"))
        for c in events.columns_of(Kind.CATEGORY):
            if c != "event":
                fields.append(Field(f"event_{c}", "events", c, "category"))
        for c in events.columns_of(Kind.NUMBER):
            fields.append(Field(f"event_{c}", "events", c, "number"))
    return TokenLayout(mode, tuple(fields), events is not None)


def tokens_sql(layout: TokenLayout, tx_table: str, events_table: str | None, *, n_splits: int = 0) -> str:
    """SQL of every token strictly before ``$cutoff``: customer_id, ts, row_id, token_type and the fields.

    Categorical fields are already vocabulary ids in the encoded tables; numeric fields are raw values.
    In order mode an order's categorical values are those of its largest line (by |amount|), and its
    amount, quantity and cost are summed. With ``n_splits`` > 0, bound instants ``$split0…`` cut orders:
    an order whose lines straddle one becomes one token per side, so that every token before a cutoff is
    built from lines before that cutoff only (otherwise only ``$cutoff`` itself bounds the lines).
    """
    tx_type = TOKEN_TYPES["transaction"]
    if layout.token == "order":
        cols = ["customer_id", "min(ts) AS ts", "min(row_id) AS row_id", f"{tx_type} AS token_type"]
        for f in layout.categorical("transactions"):
            cols.append(f"first({quote_ident(f.column)} ORDER BY abs(amount) DESC, row_id) AS {quote_ident(f.name)}")
        for f in layout.numeric("transactions"):
            if f.name == "n_lines":
                cols.append("count(*) AS n_lines")
            elif f.column in SUMMED_IN_ORDER:
                cols.append(f"sum({quote_ident(f.column)}) AS {quote_ident(f.name)}")
            else:
                cols.append(f"avg({quote_ident(f.column)}) AS {quote_ident(f.name)}")
        segment = ", " + " + ".join(f"CAST(ts >= $split{i} AS INTEGER)" for i in range(n_splits)) if n_splits else ""
        tx_sql = (
            f"SELECT {', '.join(cols)} FROM {tx_table} WHERE ts < $cutoff "
            f"GROUP BY customer_id, coalesce(order_id, 'row:' || CAST(row_id AS VARCHAR)){segment}"
        )
    else:
        cols = ["customer_id", "ts", "row_id", f"{tx_type} AS token_type"]
        cols += [
            f"{quote_ident(f.column)} AS {quote_ident(f.name)}" for f in layout.fields if f.table == "transactions"
        ]
        tx_sql = f"SELECT {', '.join(cols)} FROM {tx_table} WHERE ts < $cutoff"
    if not layout.has_events or events_table is None:
        return tx_sql
    ev_cols = ["customer_id", "ts", "row_id", f"{TOKEN_TYPES['event']} AS token_type"]
    ev_cols += [f"{quote_ident(f.column)} AS {quote_ident(f.name)}" for f in layout.fields if f.table == "events"]
    ev_sql = f"SELECT {', '.join(ev_cols)} FROM {events_table} WHERE ts < $cutoff"
    return f"({tx_sql}) UNION ALL BY NAME ({ev_sql})"


def tokens_query(
    layout: TokenLayout, tx_table: str, events_table: str | None, cutoffs: Sequence[dt.datetime]
) -> tuple[str, dict]:
    """:func:`tokens_sql` before ``max(cutoffs)``, orders split at each cutoff, and its parameters."""
    cutoffs = sorted(set(cutoffs))
    split = layout.token == "order"
    events = events_table if layout.has_events else None
    sql = tokens_sql(layout, tx_table, events, n_splits=len(cutoffs) if split else 0)
    params: dict = {"cutoff": cutoffs[-1]}
    if split:
        params.update({f"split{i}": c for i, c in enumerate(cutoffs)})
    return sql, params


def create_tokens(
    con: duckdb.DuckDBPyConnection, layout: TokenLayout, cutoffs: Sequence[dt.datetime], name: str = "tokens"
) -> str:
    """Materialise every token before ``max(cutoffs)`` (orders split at each cutoff) with ``prev_ts``.

    Reads the encoded tables ``enc_transactions`` (and ``enc_events``). ``prev_ts`` is the time of the
    customer's previous token; it depends only on earlier tokens.
    """
    sql, params = tokens_query(layout, "enc_transactions", "enc_events", cutoffs)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT *, "
        "lag(ts) OVER (PARTITION BY customer_id ORDER BY ts, token_type, row_id) AS prev_ts "
        f"FROM ({sql})",
        params,
    )
    return name
