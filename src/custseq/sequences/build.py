"""Build the sequences of a window: the last L tokens before the cutoff, per customer, as Arrow lists.

One row per customer: ``customer_id``, ``cutoff``, ``length`` and one list column per field, oldest
token first; categorical fields as vocabulary ids (int32), numeric fields standardised (float32), and
time features: ``log_dt_prev`` (log1p days since the previous token, 0 for the first ever),
``log_t_to_cutoff`` (log1p days to the cutoff), ``dow`` (0 = Monday), ``month`` (0 = January), ``hour``.
Written as Parquet shards (customers hashed to shards) so later stages can stream them.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from custseq.config import SequenceConfig
from custseq.schema import quote_ident
from custseq.sequences.tokens import tokens_sql
from custseq.sequences.vocab import PAD, SequenceVocab, signed_log1p_sql
from custseq.windows import Window

ORDER = "k DESC"  # k = 1 is the latest token; lists run oldest first


def sequences_sql(vocab: SequenceVocab, *, n_shards: int = 1) -> str:
    """SQL of the sequences at ``$cutoff`` (parameters: ``$cutoff``, ``$max_events``, statistics)."""
    layout = vocab.layout
    tokens = tokens_sql(layout, "enc_transactions", "enc_events" if layout.has_events else None)
    lists = ["list(CAST(token_type AS TINYINT) ORDER BY k DESC) AS token_type"]
    for f in layout.categorical():
        col = quote_ident(f.name)
        lists.append(f"list(CAST(coalesce({col}, {PAD}) AS INTEGER) ORDER BY {ORDER}) AS {col}")
    for i, f in enumerate(layout.numeric()):
        col = quote_ident(f.name)
        z = f"({signed_log1p_sql(col)} - $mean{i}) / $std{i}"
        lists.append(f"list(CAST(coalesce({z}, 0) AS FLOAT) ORDER BY {ORDER}) AS {col}")
    lists += [
        f"list(CAST(ln(1 + coalesce(epoch(ts - prev_ts), 0) / 86400.0) AS FLOAT) ORDER BY {ORDER}) AS log_dt_prev",
        f"list(CAST(ln(1 + epoch($cutoff - ts) / 86400.0) AS FLOAT) ORDER BY {ORDER}) AS log_t_to_cutoff",
        f"list(CAST(isodow(ts) - 1 AS TINYINT) ORDER BY {ORDER}) AS dow",
        f"list(CAST(month(ts) - 1 AS TINYINT) ORDER BY {ORDER}) AS month",
        f"list(CAST(hour(ts) AS TINYINT) ORDER BY {ORDER}) AS hour",
    ]
    return f"""
WITH tokens AS ({tokens}),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC, token_type DESC, row_id DESC) AS k,
           lag(ts) OVER (PARTITION BY customer_id ORDER BY ts, token_type, row_id) AS prev_ts
    FROM tokens
)
SELECT customer_id,
       CAST($cutoff AS TIMESTAMP) AS cutoff,
       CAST(count(*) AS INTEGER) AS length,
       {", ".join(lists)},
       CAST(hash(customer_id) % {int(n_shards)} AS INTEGER) AS shard
FROM ranked
WHERE k <= $max_events
GROUP BY customer_id
"""


def sequence_params(vocab: SequenceVocab, window: Window, cfg: SequenceConfig) -> dict:
    """Bound values of :func:`sequences_sql` for one window."""
    params: dict = {"cutoff": window.cutoff, "max_events": cfg.max_events}
    for i, f in enumerate(vocab.layout.numeric()):
        mean, std = vocab.stats[f.name]
        params[f"mean{i}"], params[f"std{i}"] = mean, std
    return params


def write_sequences(
    con: duckdb.DuckDBPyConnection,
    vocab: SequenceVocab,
    window: Window,
    cfg: SequenceConfig,
    folder: Path,
    n_customers: int,
) -> Path:
    """Write the window's sequences as Parquet shards under ``folder/shard=N/``; return the folder.

    DuckDB streams the result to disk, so no stage holds every sequence in memory.
    """
    n_shards = max(1, math.ceil(n_customers / cfg.shard_customers))
    folder.mkdir(parents=True, exist_ok=True)
    sql = sequences_sql(vocab, n_shards=n_shards)
    con.execute(
        f"COPY ({sql}) TO '{_safe_path(folder)}' (FORMAT parquet, PARTITION_BY (shard), OVERWRITE true)",
        sequence_params(vocab, window, cfg),
    )
    return folder


def read_sequences(folder: Path) -> pa.Table:
    """Read a window's shards back as one table, sorted by customer (for tests and small data)."""
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    return table.drop_columns(["shard"]).sort_by("customer_id")


def _safe_path(path: Path) -> str:
    text = str(path)
    if "'" in text:
        raise ValueError(f"output path {text!r} may not contain a quote")
    return text
