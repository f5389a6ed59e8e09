"""Tokens: which fields a token has, order aggregation vs line items, events interleaved."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from custseq.config import SequenceConfig
from custseq.io.engine import connect
from custseq.sequences.build import read_sequences, write_sequences
from custseq.sequences.tokens import Field, layout_for, tokens_sql
from custseq.sequences.vocab import fit_vocab
from custseq.validate.tables import validate_tables
from custseq.windows import Window

CUTOFF = dt.datetime(2024, 3, 1)
CFG = SequenceConfig(min_count=1)

# Customer a: order o1 (3 lines at one instant), order o2 (one line), order o3 straddling the cutoff.
# Customer b: two single-line orders.
TX = pd.DataFrame(
    [
        ("a", "2024-01-10 10:00", "o1", "p1", "books", "web", 10.0, 1.0, 6.0),
        ("a", "2024-01-10 10:00", "o1", "p2", "music", "web", -30.0, 2.0, -20.0),  # largest |amount|
        ("a", "2024-01-10 10:00", "o1", "p3", "books", "web", 5.0, 1.0, 3.0),
        ("a", "2024-02-01 09:30", "o2", "p1", "books", "app", 12.0, 1.0, 7.0),
        ("a", "2024-02-29 23:00", "o3", "p3", "books", "store", 7.0, 1.0, 4.0),
        ("a", "2024-03-01 01:00", "o3", "p2", "music", "store", 100.0, 5.0, 60.0),  # after the cutoff
        ("b", "2024-02-10 12:00", "o4", "p1", "books", "web", 8.0, 1.0, 5.0),
        ("b", "2024-02-20 12:00", "o5", "p1", "books", "web", 9.0, 1.0, 5.0),
    ],
    columns=["customer_id", "ts", "order_id", "product", "category", "channel", "amount", "quantity", "cost"],
).assign(ts=lambda d: pd.to_datetime(d["ts"]))

EVENTS = pd.DataFrame(
    [
        ("a", "2024-01-05 08:00", "login"),
        ("a", "2024-02-01 09:30", "view"),  # same instant as order o2: the transaction comes first
        ("a", "2024-02-15 18:00", "cart"),
        ("a", "2024-03-02 18:00", "cart"),  # after the cutoff
        ("b", "2024-02-11 12:00", "login"),
    ],
    columns=["customer_id", "ts", "event"],
).assign(ts=lambda d: pd.to_datetime(d["ts"]))


def tokens(token: str, events: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Raw tokens before CUTOFF (categorical ids decoded back to values)."""
    con = connect()
    tables = validate_tables(con, TX, events=events).tables
    tx, ev = tables["transactions"], tables.get("events")
    vocab = fit_vocab(con, layout_for(tx, ev, token), tx, ev, CUTOFF, CFG)
    sql = tokens_sql(vocab.layout, "enc_transactions", "enc_events" if ev else None)
    df = con.execute(f"SELECT * FROM ({sql}) ORDER BY customer_id, ts, token_type", {"cutoff": CUTOFF}).fetchdf()
    decode = {f.name: {3 + i: v for i, v in enumerate(vocab.values[f.name])} for f in vocab.layout.categorical()}
    for name, ids in decode.items():
        df[name] = df[name].map(lambda i, ids=ids: ids.get(i, i))
    return df, decode


def test_layout_fields_and_modes():
    con = connect()
    tables = validate_tables(con, TX, events=EVENTS).tables
    tx, ev = tables["transactions"], tables["events"]
    layout = layout_for(tx, ev, "auto")
    assert layout.token == "order"  # an order id is mapped
    assert layout.has_events
    assert layout.fields == (
        Field("product", "transactions", "product", "category"),
        Field("category", "transactions", "category", "category"),
        Field("channel", "transactions", "channel", "category"),
        Field("amount", "transactions", "amount", "number"),
        Field("quantity", "transactions", "quantity", "number"),
        Field("cost", "transactions", "cost", "number"),
        Field("n_lines", "transactions", "n_lines", "number"),
        Field("event", "events", "event", "category"),
    )
    line = layout_for(tx, None, "line")
    assert line.token == "line" and not line.has_events
    assert [f.name for f in line.fields] == ["product", "category", "channel", "amount", "quantity", "cost"]
    con2 = connect()
    no_orders = validate_tables(con2, TX.drop(columns="order_id")).tables["transactions"]
    assert layout_for(no_orders, None, "auto").token == "line"


def test_order_mode_aggregates_lines_before_the_cutoff():
    df, _ = tokens("order")
    a = df[df["customer_id"] == "a"].reset_index(drop=True)
    assert len(a) == 3
    first = a.iloc[0]
    assert first["ts"] == pd.Timestamp("2024-01-10 10:00")
    assert (first["amount"], first["quantity"], first["cost"], first["n_lines"]) == (-15.0, 4.0, -11.0, 3)
    # Categorical values of the largest line by |amount| (the −30 refund line).
    assert (first["product"], first["category"], first["channel"]) == ("p2", "music", "web")
    # o3 straddles the cutoff: only its line before the cutoff is aggregated.
    last = a.iloc[2]
    assert (last["amount"], last["quantity"], last["n_lines"], last["product"]) == (7.0, 1.0, 1, "p3")
    assert (df["token_type"] == 0).all()
    assert df.groupby("customer_id").size().to_dict() == {"a": 3, "b": 2}


def test_line_mode_keeps_lines():
    df, _ = tokens("line")
    a = df[df["customer_id"] == "a"]
    assert len(a) == 5  # three lines of o1, o2, the first line of o3
    assert sorted(a["amount"]) == [-30.0, 5.0, 7.0, 10.0, 12.0]
    assert "n_lines" not in df.columns


def test_events_interleave_in_time_order(tmp_path: Path):
    con = connect()
    tables = validate_tables(con, TX, events=EVENTS).tables
    tx, ev = tables["transactions"], tables["events"]
    vocab = fit_vocab(con, layout_for(tx, ev, "order"), tx, ev, CUTOFF, CFG)
    window = Window(CUTOFF, 30)
    seqs = read_sequences(write_sequences(con, vocab, window, CFG, tmp_path, 2))
    rows = {r["customer_id"]: r for r in seqs.to_pylist()}
    a = rows["a"]
    # login (01-05), o1 (01-10), o2 (02-01 09:30), view (02-01 09:30), cart (02-15), o3 (02-29)
    assert a["token_type"] == [1, 0, 0, 1, 1, 0]
    event_id = {v: 3 + i for i, v in enumerate(vocab.values["event"])}
    assert a["event"] == [event_id["login"], 0, 0, event_id["view"], event_id["cart"], 0]
    # Transaction fields are padding (0) on event tokens, and the event field on transaction tokens.
    assert [p == 0 for p in a["product"]] == [t == 1 for t in a["token_type"]]
    assert [x for x, t in zip(a["amount"], a["token_type"], strict=True) if t == 1] == [0.0, 0.0, 0.0]
    assert a["hour"] == [8, 10, 9, 9, 18, 23]
    assert rows["b"]["token_type"] == [0, 1, 0]
    assert seqs.column("length").to_pylist() == [6, 3]
    assert seqs.schema.field("token_type").type == pa.list_(pa.int8())


@pytest.mark.parametrize("token", ["order", "line"])
def test_tokens_never_reach_the_cutoff(token):
    df, _ = tokens(token, EVENTS)
    assert (df["ts"] < pd.Timestamp(CUTOFF)).all()
    assert set(df["token_type"]) == {0, 1}
