"""Typed staging: each canonical column parsed row by row from whatever type the source holds.

A value that cannot be parsed becomes NULL next to a ``<column>__present`` flag, so that the rules in
:mod:`custseq.validate.rules` can tell an empty value from an unparsable one.

The past decides the schema
---------------------------
Every decision that shapes the parsed values is taken from the rows dated before the as-of cutoff
(``before``) when one is known, so that no change to later rows (added, deleted, rewritten with new types,
formats or values) can change how an earlier row is read:

* the timestamp format: see :mod:`custseq.validate.timestamps` (a value votes only when every reading it has is
  before the cutoff; an ambiguous day/month order, two-digit years and epoch numbers are refused, never guessed);
* the kind of an extra column (number, category or free text, with ``max_category_share``), read from the rows
  whose timestamp is before the cutoff;
* whether text ids like ``17850.0`` lose their ``.0``, and whether the ids are integers (the outputs' id type).

Without a cutoff (no as-of date: it is the last day in the data) there are no later rows, and every row counts;
tables without a timestamp (customers) are not dated, and every row counts too.

Values are read strictly: a number is ``[+-]digits[.digits][e±digits]`` (or inf/nan), never ``1_000``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from custseq.config import ValidationConfig
from custseq.errors import SchemaError
from custseq.io.engine import fetch_row, fetch_scalar
from custseq.io.mapping import ColumnMap
from custseq.io.sources import RAW_ROW
from custseq.schema import ROW_ID, TABLES, Kind, quote_ident
from custseq.validate import timestamps

TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
# Customer ids that stand for "no id": quarantined with their own reason, never a customer.
PLACEHOLDER_IDS = ("null", "none", "nan", "n/a", "na", "#n/a", "nil", "undefined")
# A number as text: no digit separators (1_000, 1,000), no hex; inf and nan are read (and judged by the rules).
NUMBER_PATTERN = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(?i:inf|infinity|nan)"
TEXT_TYPES = ("VARCHAR",)
FLOAT_TYPES = ("FLOAT", "DOUBLE")
HUGEINT_LIMIT = "1e38"  # a whole float id beyond DuckDB's 128-bit integers stays written as a float
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Staged:
    """A typed staging table: canonical columns, extras with inferred kinds, and what was detected."""

    table: str  # canonical table name
    sql_name: str  # DuckDB table holding the staged rows
    raw_name: str
    kinds: dict[str, Kind]  # canonical and extra columns present, with their kind
    checked: tuple[str, ...]  # columns with a __present flag (their parse can fail)
    notes: tuple[str, ...] = field(default=())
    integer_ids: bool = False  # the user's customer ids are integers (the outputs give them back as integers)

    def has(self, column: str) -> bool:
        return column in self.kinds


def stage(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    cmap: ColumnMap,
    cfg: ValidationConfig,
    max_category_share: float,
    *,
    before: dt.datetime | None = None,
) -> Staged:
    """Create view ``stg_<table>`` over raw table ``raw`` with every mapped column parsed to its kind.

    Every decision (timestamp format, id form, extra kinds) is read from the rows whose timestamp is before
    ``before`` (all rows when None, or when the table has no timestamp).

    Raises
    ------
    SchemaError
        If a mapped column cannot be parsed in any row (wrong column, or a format custseq cannot read), or its
        timestamps are ambiguous (day/month order, two-digit years, epoch numbers).
    ConfigError
        If ``cfg.ts_format`` is not a format custseq can read.
    """
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quote_ident(raw)})").fetchall())
    parsed: dict[str, tuple[str, bool, str | None]] = {}
    past = "true"
    if "ts" in cmap.canonical:  # first: it says which rows are past, and only those decide the rest
        src = cmap.canonical["ts"]
        parsed["ts"] = _timestamp_expr(con, raw, src, types[src], cfg.ts_format, column_label(cmap, "ts"), before)
        if before is not None:
            past = f"({parsed['ts'][0]}) < TIMESTAMP '{before.isoformat(sep=' ')}'"

    def extra(name: str, src: str) -> tuple[str, Kind]:
        kind = _infer_extra_kind(con, raw, src, types[src], name in cmap.text_hints, max_category_share, past)
        return _extra_expr(src, types[src], kind), kind

    dialect = Dialect(
        parse=lambda name, src, kind: _parse_expr(con, raw, src, types[src], kind, cfg, column_label(cmap, name), past),
        present=lambda src: _present(src, types[src]),
        number=lambda src: _number(src, types[src]),
        extra=extra,
    )
    select = staging_select(cmap, parsed, dialect)
    sql_name = f"stg_{cmap.table}"
    # A view: parsing runs once, when the rules materialise the judged table.
    con.execute(f"CREATE OR REPLACE TEMP VIEW {sql_name} AS SELECT {select.sql} FROM {quote_ident(raw)}")
    _refuse_unparsable_columns(con, sql_name, raw, cmap, select.checked)
    integer = "customer_id" in cmap.canonical and integer_ids(con, raw, cmap.canonical["customer_id"], past)
    return Staged(cmap.table, sql_name, raw, select.kinds, select.checked, select.notes, integer)


@dataclass(frozen=True)
class Dialect:
    """How one engine's SQL parses, tests and infers a source column (each bound to that engine's source)."""

    parse: Callable[[str, str, Kind], tuple[str, bool, str | None]]  # (name, src, kind) -> expr, can fail, note
    present: Callable[[str], str]  # src -> true where the source holds a value
    number: Callable[[str], str]  # src -> the source read as a number
    extra: Callable[[str, str], tuple[str, Kind]]  # (name, src) -> expr and inferred kind of an extra column


@dataclass(frozen=True)
class StagingSelect:
    """The select list of a staging table, and what it holds."""

    sql: str
    kinds: dict[str, Kind]
    checked: tuple[str, ...]
    notes: tuple[str, ...]


def staging_select(cmap: ColumnMap, parsed: dict[str, tuple[str, bool, str | None]], dialect: Dialect) -> StagingSelect:
    """The staging select of ``cmap``'s columns, in either engine's SQL (one definition of what is staged).

    ``parsed`` holds the expressions already made (the timestamp, which decides the past rows); the others are
    made by ``dialect.parse``. A column whose parse can fail gets a ``<name>__present`` flag; ``amount`` may be
    quantity × price; extras get the kind ``dialect.extra`` infers.
    """
    spec = TABLES[cmap.table]
    selects = [f"{RAW_ROW} AS {ROW_ID}"]
    kinds: dict[str, Kind] = {}
    checked: list[str] = []
    notes: list[str] = []
    for name, src in cmap.canonical.items():
        kind = spec.column(name).kind
        expr, can_fail, note = parsed[name] if name in parsed else dialect.parse(name, src, kind)
        selects.append(f"{expr} AS {quote_ident(name)}")
        kinds[name] = kind
        if note:
            notes.append(f"{cmap.table}.{name} ({src}): {note}")
        if can_fail:
            selects.append(f"({dialect.present(src)}) AS {quote_ident(name + '__present')}")
            checked.append(name)
    if cmap.amount_product:
        q, p = cmap.amount_product
        selects.append(f"({dialect.number(q)}) * ({dialect.number(p)}) AS amount")
        selects.append(f"({dialect.present(q)} AND {dialect.present(p)}) AS amount__present")
        kinds["amount"] = Kind.NUMBER
        checked.append("amount")
        notes.append(f"{cmap.table}.amount = {q} × {p}")
    for name, src in cmap.extras.items():
        expr, kind = dialect.extra(name, src)
        selects.append(f"{expr} AS {quote_ident(name)}")
        kinds[name] = kind
    return StagingSelect(", ".join(selects), kinds, tuple(checked), tuple(notes))


def column_label(cmap: ColumnMap, name: str) -> str:
    """How errors name a mapped column: its table, source column and canonical name."""
    src = cmap.canonical.get(name) or " × ".join(cmap.amount_product or ())
    return f"{cmap.table} column {src!r} (used as {name})"


def _present(src: str, dtype: str) -> str:
    col = quote_ident(src)
    if dtype in TEXT_TYPES:
        return f"{col} IS NOT NULL AND trim({col}) <> ''"
    if dtype in FLOAT_TYPES:
        return f"{col} IS NOT NULL AND NOT isnan({col})"
    return f"{col} IS NOT NULL"


def integer_ids(con: duckdb.DuckDBPyConnection, raw: str, src: str, past: str = "true") -> bool:
    """Whether the user's id column ``src`` holds integers that fit 64 bits: an integer type, floats that are all
    whole (as pandas makes of an integer column with gaps), or text that is all whole numbers without leading
    zeros (a CSV's ``17850``, ``17850.0``; not ``00017``). The outputs then give ids back as integers, in numeric
    order, rather than as the text custseq works with. Only rows where SQL ``past`` holds decide."""
    dtype = fetch_scalar(con, f"SELECT column_type FROM (DESCRIBE {quote_ident(raw)}) WHERE column_name = ?", [src])
    col, table = quote_ident(src), quote_ident(raw)
    if dtype in INTEGER_TYPES:
        checks, present = [f"abs({col}) <= {INT64_MAX}"], f"{col} IS NOT NULL"
    elif dtype in FLOAT_TYPES:
        checks, present = [f"{col} = trunc({col}) AND abs({col}) <= {INT64_MAX}"], f"isfinite({col})"
    elif dtype in TEXT_TYPES:  # all plain integers, or all written as floats (_id_expr drops the ".0" then)
        number = "-?(0|[1-9][0-9]{0,17})"
        checks = [f"regexp_full_match(trim({col}), '{number}')", f"regexp_full_match(trim({col}), '{number}\\.0+')"]
        present = f"trim({col}) <> ''"
    else:
        return False
    found = fetch_row(con, f"SELECT {', '.join(f'coalesce(bool_and({c}), false)' for c in checks)} FROM {table} "
                           f"WHERE {present} AND ({past})")  # fmt: skip
    return any(found)


def _parse_expr(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    src: str,
    dtype: str,
    kind: Kind,
    cfg: ValidationConfig,
    label: str,
    past: str,
) -> tuple[str, bool, str | None]:
    """SQL that parses ``src`` to ``kind``, whether it can fail on a present value, and a note."""
    col = quote_ident(src)
    if kind is Kind.ID:
        return _id_expr(con, raw, src, dtype, past), False, None
    if kind is Kind.TIMESTAMP:  # not the table's own ts (signup_ts): undated, every row decides
        return _timestamp_expr(con, raw, src, dtype, cfg.ts_format, label, None)
    if kind is Kind.NUMBER:
        return _number(src, dtype), dtype in TEXT_TYPES or dtype in FLOAT_TYPES, None
    if kind is Kind.BOOLEAN:
        if dtype == "BOOLEAN":
            return col, False, None
        if dtype in TEXT_TYPES:
            t, f = ", ".join(f"'{w}'" for w in TRUE_WORDS), ", ".join(f"'{w}'" for w in FALSE_WORDS)
            expr = f"CASE WHEN lower(trim({col})) IN ({t}) THEN true WHEN lower(trim({col})) IN ({f}) THEN false END"
            return expr, True, None
        return f"(TRY_CAST({col} AS DOUBLE) <> 0)", False, None
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')", False, None


def _number(src: str, dtype: str) -> str:
    col = quote_ident(src)
    if dtype in TEXT_TYPES:
        return f"CASE WHEN regexp_full_match(trim({col}), '{NUMBER_PATTERN}') THEN TRY_CAST(trim({col}) AS DOUBLE) END"
    if dtype in FLOAT_TYPES:
        return f"CASE WHEN isnan({col}) THEN NULL ELSE CAST({col} AS DOUBLE) END"
    return f"TRY_CAST({col} AS DOUBLE)"


def placeholder_sql(expr: str) -> str:
    """SQL: the id text ``expr`` is a placeholder for no id (NULL, None, NaN, N/A…)."""
    words = ", ".join(f"'{w}'" for w in PLACEHOLDER_IDS)
    return f"lower({expr}) IN ({words})"


def _id_expr(con: duckdb.DuckDBPyConnection, raw: str, src: str, dtype: str, past: str) -> str:
    col = quote_ident(src)
    if dtype in FLOAT_TYPES:  # integer ids that became floats (NaN in a pandas column): 17850, not 17850.0
        as_int = f"CAST(CAST({col} AS HUGEINT) AS VARCHAR)"
        return (
            f"CASE WHEN NOT isfinite({col}) THEN NULL WHEN {col} = trunc({col}) AND abs({col}) < {HUGEINT_LIMIT} "
            f"THEN {as_int} "
            f"ELSE CAST({col} AS VARCHAR) END"
        )
    text = f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"
    if dtype in TEXT_TYPES:
        all_float_ints = fetch_scalar(
            con,
            f"SELECT coalesce(bool_and(regexp_matches({text}, '^-?[0-9]+\\.0+$')), false) "
            f"FROM {quote_ident(raw)} WHERE {text} IS NOT NULL AND NOT {placeholder_sql(text)} AND ({past})",
        )
        if all_float_ints:
            return f"regexp_replace({text}, '\\.0+$', '')"
    return text


def _timestamp_expr(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    src: str,
    dtype: str,
    ts_format: str | None,
    label: str,
    before: dt.datetime | None,
) -> tuple[str, bool, str | None]:
    col = quote_ident(src)
    if dtype == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {col})", False, "time zone converted to UTC"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"CAST({col} AS TIMESTAMP)", False, None
    text = f"trim(CAST({col} AS VARCHAR))"
    if ts_format:
        chosen = timestamps.configured(text, ts_format, con)
    else:
        chosen = timestamps.detect(con, quote_ident(raw), text, label, before)
    return chosen.expr, True, chosen.note


def _infer_extra_kind(
    con: duckdb.DuckDBPyConnection, raw: str, src: str, dtype: str, text_hint: bool, max_share: float, past: str
) -> Kind:
    col = quote_ident(src)
    if dtype in INTEGER_TYPES or dtype in FLOAT_TYPES or dtype.startswith("DECIMAL"):
        return Kind.NUMBER
    if dtype == "BOOLEAN":
        return Kind.CATEGORY
    if dtype not in TEXT_TYPES:
        return Kind.TEXT  # dates, lists, structs: kept in the table, not used as features
    n, n_num, n_distinct = fetch_row(
        con,
        f"SELECT count({col}), count_if(regexp_full_match(trim({col}), '{NUMBER_PATTERN}')), "
        f"count(DISTINCT {col}) FROM {quote_ident(raw)} WHERE trim({col}) <> '' AND ({past})",
    )
    if n and n_num == n:
        return Kind.NUMBER
    if text_hint or (n and n_distinct / n > max_share):
        return Kind.TEXT
    return Kind.CATEGORY


def _extra_expr(src: str, dtype: str, kind: Kind) -> str:
    if kind is Kind.NUMBER:
        return _number(src, dtype)
    return f"NULLIF(trim(CAST({quote_ident(src)} AS VARCHAR)), '')"


def _refuse_unparsable_columns(
    con: duckdb.DuckDBPyConnection, stg: str, raw: str, cmap: ColumnMap, checked: tuple[str, ...]
) -> None:
    for name in checked:
        col = quote_ident(name)
        present, parsed = fetch_row(con, f"SELECT count_if({quote_ident(name + '__present')}), count({col}) FROM {stg}")
        if present and not parsed:
            src = cmap.canonical.get(name) or " × ".join(cmap.amount_product or ())
            examples = _examples(con, raw, src)
            hint = (
                'set [validation] ts_format (e.g. "%d/%m/%Y") or map another column'
                if name in ("ts", "signup_ts")
                else f"map another column with --column {name}=<column>"
            )
            raise SchemaError(
                f"{cmap.table} column {src!r} (used as {name}) could not be parsed in any row, e.g. {examples}; {hint}"
            )


def _examples(con: duckdb.DuckDBPyConnection, raw: str, src: str) -> list[str]:
    first = src.split(" × ")[0]
    rows = con.execute(
        f"SELECT DISTINCT CAST({quote_ident(first)} AS VARCHAR) FROM {quote_ident(raw)} "
        f"WHERE {quote_ident(first)} IS NOT NULL LIMIT 3"
    ).fetchall()
    return [r[0] for r in rows]
