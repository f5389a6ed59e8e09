"""Vocabularies and numeric statistics, fitted on training rows only and saved as JSON.

Categorical ids: 0 = padding or no value (a field that does not apply to the token, or is empty),
1 = mask (pre-training), 2 = unknown (rare in training, or unseen), 3… = values by falling frequency.
Numeric fields are ``sign(x)·log1p(|x|)``, standardised with the mean and standard deviation of the
training tokens. The text model (:mod:`custseq.text`), when the events have texts, travels with the vocabulary:
it makes the event tokens' text attributes, so whatever encodes tokens with the vocabulary applies it too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from custseq.config import SequenceConfig
from custseq.errors import ArtifactError
from custseq.io.engine import fetch_row, fetch_scalar
from custseq.schema import quote_ident
from custseq.sequences.tokens import Field, TokenLayout, create_tokens
from custseq.text.model import TextModel
from custseq.validate.quarantine import CleanTable

PAD, MASK, UNKNOWN = 0, 1, 2
FIRST_VALUE_ID = 3
VOCAB_FORMAT = 1
EXACT = "DECIMAL(38, 18)"  # values rounded to 1e-18, then summed exactly (room for ~1e12 tokens)


def signed_log1p_sql(expr: str) -> str:
    """SQL of sign(x)·log1p(|x|), the transform applied to every numeric field."""
    return f"(sign({expr}) * ln(1 + abs({expr})))"


@dataclass(frozen=True)
class SequenceVocab:
    """Everything needed to encode tokens the same way at training and at scoring time."""

    layout: TokenLayout
    values: dict[str, tuple[str, ...]]  # categorical field -> values; id = FIRST_VALUE_ID + position
    stats: dict[str, tuple[float, float]]  # numeric field -> (mean, std) of the signed log1p
    fitted_before: str  # ISO instant: only rows before it were used
    format_version: int = VOCAB_FORMAT
    reserved: dict[str, int] = field(default_factory=lambda: {"pad": PAD, "mask": MASK, "unknown": UNKNOWN})
    text: TextModel | None = None  # fitted on texts before fitted_before; None: the tokens carry no text

    def size(self, field_name: str) -> int:
        """Number of ids of a categorical field, reserved ids included."""
        return FIRST_VALUE_ID + len(self.values[field_name])

    def to_json(self) -> dict:
        d = asdict(self)
        d["values"] = {k: list(v) for k, v in self.values.items()}
        d["stats"] = {k: {"mean": m, "std": s} for k, (m, s) in self.stats.items()}
        if self.text is None:  # the key only where there is a text model: earlier vocabularies read the same
            del d["text"]
        else:
            d["text"] = self.text.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> SequenceVocab:
        if not isinstance(d, dict):
            raise ArtifactError(f"vocabulary JSON must be an object, got {type(d).__name__}")
        if d.get("format_version") != VOCAB_FORMAT:
            raise ArtifactError(
                f"vocabulary format {d.get('format_version')} cannot be read by this custseq (reads {VOCAB_FORMAT})"
            )
        try:
            lay = d["layout"]
            layout = TokenLayout(lay["token"], tuple(Field(**f) for f in lay["fields"]), lay["has_events"])
            return cls(
                layout=layout,
                values={k: tuple(v) for k, v in d["values"].items()},
                stats={k: (float(v["mean"]), float(v["std"])) for k, v in d["stats"].items()},
                fitted_before=d["fitted_before"],
                format_version=d["format_version"],
                reserved=dict(d["reserved"]),
                text=TextModel.from_json(d["text"]) if d.get("text") is not None else None,
            )
        except KeyError as e:
            raise ArtifactError(f"vocabulary JSON is incomplete or corrupted: missing {e}") from None
        except (TypeError, AttributeError, ValueError) as e:
            raise ArtifactError(f"vocabulary JSON is incomplete or corrupted: {e}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> SequenceVocab:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactError(f"cannot read vocabulary {path}: {e}") from None


def fit_vocab(
    con: duckdb.DuckDBPyConnection,
    layout: TokenLayout,
    tx: CleanTable,
    events: CleanTable | None,
    before: dt.datetime,
    cfg: SequenceConfig,
    *,
    cutoffs: Sequence[dt.datetime] = (),
) -> SequenceVocab:
    """Fit categorical vocabularies and numeric statistics on rows with ``ts < before``.

    Values seen fewer than ``cfg.min_count`` times, or beyond the ``cfg.max_vocab`` most frequent,
    share the unknown id. Leaves the encoded tables and the ``tokens`` table (up to the latest of
    ``before`` and ``cutoffs``, orders split at each) on the connection for :mod:`custseq.sequences.build`.
    """
    values = fit_categories(con, layout, tx, events, before, cfg)
    encode_tables(con, SequenceVocab(layout, values, {}, before.isoformat()), tx, events)
    tokens = create_tokens(con, layout, [before, *cutoffs])
    return SequenceVocab(layout, values, fit_numeric_stats(con, layout, tokens, before), before.isoformat())


def fit_categories(
    con: duckdb.DuckDBPyConnection,
    layout: TokenLayout,
    tx: CleanTable,
    events: CleanTable | None,
    before: dt.datetime,
    cfg: SequenceConfig,
) -> dict[str, tuple[str, ...]]:
    """Vocabulary of every categorical field: values with ``cfg.min_count`` rows before ``before``, by frequency."""
    tables = {"transactions": tx.sql_name, "events": events.sql_name if events else None}
    values: dict[str, tuple[str, ...]] = {}
    for f in layout.categorical():
        rows = con.execute(
            f"SELECT v FROM (SELECT {quote_ident(f.column)} AS v, count(*) AS n FROM {tables[f.table]} "
            f"WHERE ts < $before AND {quote_ident(f.column)} IS NOT NULL GROUP BY v) "
            "WHERE n >= $min_count ORDER BY n DESC, v LIMIT $max_vocab",
            {"before": before, "min_count": cfg.min_count, "max_vocab": cfg.max_vocab},
        ).fetchall()
        values[f.name] = tuple(str(r[0]) for r in rows)
    return values


def fit_numeric_stats(
    con: duckdb.DuckDBPyConnection,
    layout: TokenLayout,
    tokens: str,
    before: dt.datetime,
    params: dict | None = None,
) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each numeric field's signed log1p over the tokens before ``before``.

    ``tokens`` is a table, or a parenthesised query with its ``params`` (:func:`custseq.sequences.tokens.tokens_query`).
    Sums run in exact decimal arithmetic, so the statistics do not depend on how DuckDB splits the work
    across threads; a constant field gets standard deviation 1.
    """
    return combine_numeric_sums(layout, [partial_numeric_sums(con, layout, tokens, before, params)])


def partial_numeric_sums(
    con: duckdb.DuckDBPyConnection,
    layout: TokenLayout,
    tokens: str,
    before: dt.datetime,
    params: dict | None = None,
) -> pa.Table:
    """Per numeric field: count, exact sum and exact sum of squares of its signed log1p over ``tokens`` before
    ``before``, as decimal text: the terms of :func:`fit_numeric_stats`, which add up across parts of the data
    (the Spark engine's tasks)."""
    numeric = layout.numeric()
    names, counts, sums, squares = [], [], [], []
    if numeric:
        aggs = []
        for f in numeric:
            x = signed_log1p_sql(quote_ident(f.name))
            aggs += [f"count({x})", f"sum(CAST({x} AS {EXACT}))", f"sum(CAST({x} * {x} AS {EXACT}))"]
        sql = f"SELECT {', '.join(aggs)} FROM {tokens} WHERE ts < $before"
        row = fetch_row(con, sql, {**(params or {}), "before": before})
        for i, f in enumerate(numeric):
            names.append(f.name)
            counts.append(int(row[3 * i]))
            sums.append(str(row[3 * i + 1] or 0))
            squares.append(str(row[3 * i + 2] or 0))
    return pa.table({"field": names, "n": pa.array(counts, pa.int64()), "s1": sums, "s2": squares})


def combine_numeric_sums(layout: TokenLayout, partials: Iterable[pa.Table]) -> dict[str, tuple[float, float]]:
    """(mean, std) per numeric field from :func:`partial_numeric_sums` of one or more parts of the data."""
    counts = {f.name: 0 for f in layout.numeric()}
    sums = {f.name: (Decimal(0), Decimal(0)) for f in layout.numeric()}
    for part in partials:
        for name, n, s1, s2 in zip(*(part[c].to_pylist() for c in ("field", "n", "s1", "s2")), strict=True):
            counts[name] += n
            sums[name] = (sums[name][0] + Decimal(s1), sums[name][1] + Decimal(s2))
    stats = {}
    for name, n in counts.items():
        s1, s2 = sums[name]
        if not n:
            stats[name] = (0.0, 1.0)
            continue
        mean = float(s1) / n
        var = max(float(s2) / n - mean * mean, 0.0)
        stats[name] = (mean, math.sqrt(var) if var > 1e-12 else 1.0)
    return stats


def encode_tables(
    con: duckdb.DuckDBPyConnection, vocab: SequenceVocab, tx: CleanTable, events: CleanTable | None
) -> dict[str, int]:
    """Create ``enc_transactions`` (and ``enc_events``): categorical columns replaced by vocabulary ids.

    Returns the number of non-empty values per field that map to the unknown id.
    """
    unknown: dict[str, int] = {}
    for table, clean in (("transactions", tx), ("events", events)):
        if clean is None:
            continue
        fields = vocab.layout.categorical(table)
        joins, selects = [], []
        for i, f in enumerate(fields):
            alias = f"v{i}"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE vocab_{i}_{table} AS "
                "SELECT unnest($v::VARCHAR[]) AS value, unnest(range($first, $first + len($v::VARCHAR[]))) AS id",
                {"v": list(vocab.values[f.name]), "first": FIRST_VALUE_ID},
            )
            col = quote_ident(f.column)
            joins.append(f"LEFT JOIN vocab_{i}_{table} {alias} ON CAST(t.{col} AS VARCHAR) = {alias}.value")
            selects.append(
                f"CAST(CASE WHEN t.{col} IS NULL THEN {PAD} ELSE coalesce({alias}.id, {UNKNOWN}) END AS INTEGER) "
                f"AS {col}"
            )
        replaced = ", ".join(quote_ident(f.column) for f in fields)
        keep = f"t.* EXCLUDE ({replaced})" if fields else "t.*"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE enc_{table} AS SELECT {', '.join([keep, *selects])} "
            f"FROM {clean.sql_name} t {' '.join(joins)}"
        )
        for f in fields:
            col = quote_ident(f.column)
            unknown[f.name] = fetch_scalar(con, f"SELECT count_if({col} = {UNKNOWN}) FROM enc_{table}")
    return unknown


def event_types(vocab: SequenceVocab) -> tuple[str, ...]:
    """The event types of the training rows, most frequent first (the vocabulary's): each gets feature columns."""
    return vocab.values.get("event", ())
