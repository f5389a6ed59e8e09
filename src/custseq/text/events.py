"""The text model on the events table: fitted on texts before a cutoff, applied to every event with a text.

Leakage rule: the model is fitted on texts with ``ts < before``, where ``before`` is the latest training cutoff
(the same instant the sequence vocabularies are fitted before), so the scoring window's texts never shape it;
like the vocabularies it is unsupervised (no label is read). Applying it is a function of each text alone, so
an event's numbers do not depend on any other row; features and tokens then read events before their own
cutoff only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import pyarrow as pa

from custseq.config import TextConfig
from custseq.errors import SchemaError
from custseq.io.engine import drop_tables
from custseq.schema import ROW_ID, TEXT_SENTIMENT, Kind, quote_ident, text_svd_columns
from custseq.text.model import TextModel, fit_text_model
from custseq.validate.quarantine import CleanTable

TEXT = "text"  # the events column (schema.EVENTS)
CHUNK_TEXTS = 20_000  # distinct texts transformed at once
_KEY = "__text"
MAX_SVD_DIMS = 256  # TextConfig's limit


def vector_columns(events: CleanTable | None) -> tuple[str, ...]:
    """The text columns :func:`with_text_vectors` added to ``events`` (sentiment first), or () without them."""
    if events is None or not events.has(TEXT_SENTIMENT):
        return ()
    return (TEXT_SENTIMENT, *(c for c in text_svd_columns(MAX_SVD_DIMS) if events.has(c)))


def uses_text(events: CleanTable | None, cfg: TextConfig) -> bool:
    """Whether events have a text column and the text settings use it."""
    return cfg.enabled and events is not None and events.has(TEXT)


def _nonblank(column: str) -> str:
    return f"nullif(trim({quote_ident(column)}), '') IS NOT NULL"


def fit_on_events(
    con: duckdb.DuckDBPyConnection, events: CleanTable, before: dt.datetime, cfg: TextConfig
) -> TextModel:
    """Fit the text model on the latest ``cfg.max_fit_texts`` non-blank texts with ``ts < before``."""
    rows = con.execute(
        f"SELECT {quote_ident(TEXT)} FROM {events.sql_name} WHERE ts < $before AND {_nonblank(TEXT)} "
        f"ORDER BY ts DESC, {ROW_ID} DESC LIMIT $n",
        {"before": before, "n": cfg.max_fit_texts},
    ).fetchall()
    return fit_text_model([r[0] for r in rows], cfg, before.isoformat())


def with_text_vectors(
    con: duckdb.DuckDBPyConnection, events: CleanTable, model: TextModel, name: str = "events_with_text"
) -> CleanTable:
    """``events`` with numeric columns ``text_sentiment`` and ``text_svd_1…`` (null for an event without text).

    Each distinct text is transformed once. The returned table is ``events`` under a new name with the columns
    added as numbers, so the event tokens carry them as numeric attributes.

    Raises
    ------
    SchemaError
        If the events have no text column, or already have a column of one of these names.
    """
    if not events.has(TEXT):
        raise SchemaError(
            "the model was trained with event texts (events.text) and these events have no text column; map it "
            "with --column events.text=<your column>, or retrain without texts"
        )
    columns = (TEXT_SENTIMENT, *text_svd_columns(model.svd_dims))
    if taken := [c for c in columns if events.has(c)]:
        raise SchemaError(
            f"events already have column(s) {taken}, which custseq adds for the texts; rename them in the data"
        )
    texts = [
        r[0] for r in con.execute(f"SELECT DISTINCT {quote_ident(TEXT)} FROM {events.sql_name} WHERE {_nonblank(TEXT)}")
        .fetchall()
    ]  # fmt: skip
    chunks = []
    for start in range(0, len(texts), CHUNK_TEXTS):
        chunk = texts[start : start + CHUNK_TEXTS]
        values = model.transform(chunk)
        chunks.append(pa.table({_KEY: chunk, **{c: values[:, i] for i, c in enumerate(columns)}}))
    schema = pa.schema([(_KEY, pa.string()), *((c, pa.float64()) for c in columns)])
    vectors = pa.concat_tables(chunks) if chunks else schema.empty_table()
    con.register("text_vectors_arrow", vectors)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE text_vectors AS SELECT * FROM text_vectors_arrow")
    finally:
        con.unregister("text_vectors_arrow")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT e.*, v.* EXCLUDE ({_KEY}) FROM {events.sql_name} e "
        f"LEFT JOIN text_vectors v ON e.{quote_ident(TEXT)} = v.{_KEY}"
    )
    drop_tables(con, "text_vectors")
    return dataclasses.replace(events, sql_name=name, kinds={**events.kinds, **dict.fromkeys(columns, Kind.NUMBER)})
