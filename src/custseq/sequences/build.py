"""Build the sequences of a window: the last L tokens before the cutoff, per customer, as Arrow lists.

One row per customer: ``customer_id``, ``cutoff``, ``length`` and one list column per field, oldest
token first; categorical fields as vocabulary ids (int32), numeric fields standardised (float32), and
time features: ``log_dt_prev`` (log1p days since the previous token, 0 for the first ever),
``log_t_to_cutoff`` (log1p days to the cutoff), ``dow`` (0 = Monday), ``month`` (0 = January), ``hour``.

Every customer's tokens are sorted once, up to the latest cutoff, into one list (:func:`build_token_lists`);
a window's sequences are then the prefix before its cutoff, cut to the last L tokens. Orders are split at
every cutoff, so the prefix before a cutoff is built from rows before it only. Written as Parquet shards
(customers hashed to shards) so later stages can stream them.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from custseq.config import SequenceConfig
from custseq.schema import TOKEN_TYPES, quote_ident
from custseq.sequences.tokens import create_tokens
from custseq.sequences.vocab import PAD, SequenceVocab, signed_log1p_sql
from custseq.windows import Window

TOKEN_LISTS = "token_lists"
SHARD_FILE = "data_0.parquet"  # the one file of a sequence shard (DuckDB's partitioned COPY names it so)


def build_token_lists(
    con: duckdb.DuckDBPyConnection, vocab: SequenceVocab, tokens: str = "tokens", name: str = TOKEN_LISTS
) -> str:
    """Create table ``name``: per customer, every token of table ``tokens`` as one sorted list of structs.

    ``tokens`` comes from :func:`custseq.sequences.tokens.create_tokens`. Numeric fields are standardised
    with the vocabulary's statistics; ``log_dt_prev`` and the calendar fields are computed here, since they
    depend only on earlier tokens.
    """
    layout = vocab.layout
    fields = ["ts := ts", "token_type := CAST(token_type AS TINYINT)"]
    for f in layout.categorical():
        fields.append(f"{quote_ident(f.name)} := CAST(coalesce({quote_ident(f.name)}, {PAD}) AS INTEGER)")
    params: dict = {}
    for i, f in enumerate(layout.numeric()):
        mean, std = vocab.stats[f.name]
        params[f"mean{i}"], params[f"std{i}"] = mean, std
        z = f"({signed_log1p_sql(quote_ident(f.name))} - $mean{i}) / $std{i}"
        fields.append(f"{quote_ident(f.name)} := CAST(coalesce({z}, 0) AS FLOAT)")
    fields += [
        "log_dt_prev := CAST(ln(1 + coalesce(epoch(ts - prev_ts), 0) / 86400.0) AS FLOAT)",
        "dow := CAST(isodow(ts) - 1 AS TINYINT)",
        "month := CAST(month(ts) - 1 AS TINYINT)",
        "hour := CAST(hour(ts) AS TINYINT)",
    ]
    con.execute(
        f"""
CREATE OR REPLACE TEMP TABLE {name} AS
SELECT customer_id,
       min(ts) FILTER (WHERE token_type = {TOKEN_TYPES["transaction"]}) AS first_transaction,
       list(struct_pack({", ".join(fields)}) ORDER BY ts, token_type, row_id) AS tokens
FROM {tokens} GROUP BY customer_id
""",
        params,
    )
    return name


def sequences_sql(vocab: SequenceVocab, lists: str = TOKEN_LISTS, *, n_shards: int = 1) -> str:
    """SQL of the sequences at ``$cutoff`` cut from a token-lists table (parameters ``$cutoff``, ``$max_events``)."""
    names = ["token_type", *(f.name for f in vocab.layout.categorical()), *(f.name for f in vocab.layout.numeric())]
    columns = [f"list_transform(toks, lambda x: x.{quote_ident(n)}) AS {quote_ident(n)}" for n in names]
    columns.append("list_transform(toks, lambda x: x.log_dt_prev) AS log_dt_prev")
    columns.append(
        "list_transform(toks, lambda x: CAST(ln(1 + epoch($cutoff - x.ts) / 86400.0) AS FLOAT)) AS log_t_to_cutoff"
    )
    columns += [f"list_transform(toks, lambda x: x.{n}) AS {n}" for n in ("dow", "month", "hour")]
    return f"""
SELECT customer_id,
       CAST($cutoff AS TIMESTAMP) AS cutoff,
       CAST(len(toks) AS INTEGER) AS length,
       {", ".join(columns)},
       CAST(hash(customer_id) % {int(n_shards)} AS INTEGER) AS shard
FROM (
    SELECT customer_id, list_slice(tokens, greatest(n - $max_events + 1, 1), n) AS toks
    FROM (
        SELECT customer_id, tokens,
               coalesce(list_position(list_transform(tokens, lambda x: x.ts >= $cutoff), true) - 1, len(tokens)) AS n
        FROM {lists}
        WHERE first_transaction < $cutoff  -- customers are those with a transaction before the cutoff
    )
)
ORDER BY customer_id  -- each shard in customer order (write_sequences restores it where threads did not keep it)
"""


def write_sequences(
    con: duckdb.DuckDBPyConnection,
    vocab: SequenceVocab,
    window: Window,
    cfg: SequenceConfig,
    folder: Path,
    n_customers: int,
    *,
    lists: str | None = None,
) -> Path:
    """Write the window's sequences as Parquet shards under ``folder/shard=N/``; return the folder.

    ``lists`` is a table from :func:`build_token_lists` whose cutoffs include this window's; without it
    one is built for this window alone. DuckDB streams the result to disk.
    """
    if lists is None:
        tokens = create_tokens(con, vocab.layout, [window.cutoff], name="tokens_single")
        lists = build_token_lists(con, vocab, tokens, name="token_lists_single")
    n_shards = max(1, math.ceil(n_customers / cfg.shard_customers))
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY ({sequences_sql(vocab, lists, n_shards=n_shards)}) TO '{_safe_path(folder)}' "
        "(FORMAT parquet, PARTITION_BY (shard), OVERWRITE true)",
        {"cutoff": window.cutoff, "max_events": cfg.max_events},
    )
    for shard in sorted(path for path in folder.iterdir() if path.is_dir()):
        _in_customer_order(con, shard)
    return folder


def _in_customer_order(con: duckdb.DuckDBPyConnection, shard: Path) -> None:
    """One shard's rows in customer order, in one file.

    DuckDB's partitioned write does not keep the query's order (its threads append as they finish), and the
    batches streamed from a shard, hence training and the float sums of scoring, must not vary from run to run.
    A shard already in order (one thread wrote it) is left as it is.
    """
    files = sorted(shard.glob("*.parquet"))
    if len(files) == 1 and _in_order(files[0]):
        return
    ordered = shard / "ordered.parquet.tmp"
    sources = ", ".join(f"'{_safe_path(f)}'" for f in files)
    rows = f"SELECT * FROM read_parquet([{sources}], hive_partitioning = false)"  # no `shard` column from the path
    con.execute(f"COPY ({rows} ORDER BY customer_id) TO '{_safe_path(ordered)}' (FORMAT parquet)")
    for f in files:
        f.unlink()
    ordered.rename(shard / SHARD_FILE)


def _in_order(file: Path) -> bool:
    ids = pq.read_table(file, columns=["customer_id"]).column("customer_id").combine_chunks()
    return len(ids) < 2 or bool(pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py())


def read_sequences(folder: Path) -> pa.Table:
    """Read a window's shards back as one table, sorted by customer (for tests and small data)."""
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    return table.drop_columns(["shard"]).sort_by("customer_id")


def _safe_path(path: Path) -> str:
    text = str(path)
    if "'" in text:
        raise ValueError(f"output path {text!r} may not contain a quote")
    return text
