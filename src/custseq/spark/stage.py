"""Typed staging on Spark: each canonical column parsed from whatever type the source holds.

The Spark twin of :mod:`custseq.validate.parse` and :mod:`custseq.validate.timestamps`: the same decisions, read
from the same rows (before the as-of cutoff) with the same patterns, and the same parsed values; the parity test
(``tests/spark/test_parity.py``) holds the two to each other. Patterns, placeholder words, format candidates and
error messages are imported from those modules, never copied.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from custseq.config import ValidationConfig
from custseq.errors import ConfigError, SchemaError
from custseq.io.mapping import ColumnMap
from custseq.schema import TABLES, Kind, quote_ident
from custseq.spark.sql import full_match, literal
from custseq.validate import timestamps
from custseq.validate.parse import (
    FALSE_WORDS,
    INT64_MAX,
    NUMBER_PATTERN,
    PLACEHOLDER_IDS,
    TRUE_WORDS,
    Dialect,
    Staged,
    column_label,
    staging_select,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TEXT, FLOAT, INTEGER, DECIMAL, BOOLEAN, TIMESTAMP, ZONED, DATE, OTHER = (
    "text", "float", "integer", "decimal", "boolean", "timestamp", "zoned", "date", "other",
)  # fmt: skip
_TYPES = {
    "string": TEXT, "float": FLOAT, "double": FLOAT, "tinyint": INTEGER, "smallint": INTEGER, "int": INTEGER,
    "bigint": INTEGER, "boolean": BOOLEAN, "timestamp_ntz": TIMESTAMP, "timestamp": ZONED, "date": DATE,
}  # fmt: skip
FLOAT_INT_ID = r"^-?[0-9]+\.0+$"  # a text id written as a float: 17850.0
FLOAT_INT_SUFFIX = r"\.0+$"
TWO_DIGIT_YEAR_PARTS = r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2})"
_JAVA_FIELDS = {"%Y": "yyyy", "%m": "M", "%d": "d", "%H": "H", "%M": "mm", "%S": "ss"}
_COMPACT_FIELDS = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}


def type_class(simple_type: str) -> str:
    """The class of a Spark column type (``DataFrame.dtypes``) as staging treats it."""
    if simple_type.startswith("decimal"):
        return DECIMAL
    if simple_type.startswith("varchar") or simple_type.startswith("char"):
        return TEXT
    return _TYPES.get(simple_type, OTHER)


@dataclass(frozen=True)
class Reading:
    """How a text timestamp is read: Spark SQL over the trimmed text ``$S``, and whether it can be used."""

    name: str
    pattern: str
    reading: str
    usable: bool = True

    def sql(self, s: str) -> str:
        return f"CASE WHEN {full_match(s, self.pattern)} THEN {self.reading.replace('$S', s)} END"


def _java_pattern(fmt: str) -> str | None:
    """A strptime format (only %Y %m %d %H %M %S and literals) as a Java DateTimeFormatter pattern, or None."""
    parts = re.split(r"(%.)", fmt)
    compact = not "".join(parts[0::2])
    fields = _COMPACT_FIELDS if compact else _JAVA_FIELDS
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            if part not in fields:
                return None
            out.append(fields[part])
        elif part:
            out.append("'" + part.replace("'", "''") + "'" if re.search(r"[A-Za-z']", part) else part)
    return "".join(out)


def _readings() -> tuple[Reading, ...]:
    """The candidates of :data:`custseq.validate.timestamps.CANDIDATES`, read in Spark SQL, in the same order."""
    out = []
    for candidate in timestamps.CANDIDATES:
        if candidate.name == timestamps.ISO:
            zoned = "CAST(try_cast($S AS TIMESTAMP_LTZ) AS TIMESTAMP_NTZ)"
            plain = "try_cast($S AS TIMESTAMP_NTZ)"
            reading = f"CASE WHEN {full_match('$S', timestamps.ISO_ZONED)} THEN {zoned} ELSE {plain} END"
        elif candidate.name == "two-digit years":
            yy = f"CAST(regexp_extract($S, {literal(TWO_DIGIT_YEAR_PARTS)}, 3) AS BIGINT)"
            reading = f"make_timestamp_ntz({yy} + CASE WHEN {yy} <= 68 THEN 2000 ELSE 1900 END, 12, 31, 23, 59, 59)"
        elif candidate.name == "epoch numbers":
            reading = f"CAST(timestamp_micros({_epoch_micros('$S')}) AS TIMESTAMP_NTZ)"
        else:
            java = _java_pattern(candidate.name)
            assert java is not None, candidate.name
            reading = f"CAST(try_to_timestamp($S, {literal(java)}) AS TIMESTAMP_NTZ)"
        out.append(Reading(candidate.name, candidate.pattern, reading, candidate.usable))
    return tuple(out)


def _epoch_micros(s: str) -> str:
    digits = f"length(split_part({s}, '.', 1))"
    factor = f"CASE WHEN {digits} <= 10 THEN 1e6 WHEN {digits} <= 13 THEN 1e3 WHEN {digits} <= 16 THEN 1 ELSE 1e-3 END"
    return f"try_cast(try_cast({s} AS DOUBLE) * {factor} AS BIGINT)"


READINGS = _readings()


def stage(
    spark: SparkSession,
    raw: DataFrame,
    cmap: ColumnMap,
    cfg: ValidationConfig,
    max_category_share: float,
    *,
    before: dt.datetime | None = None,
) -> tuple[Staged, DataFrame]:
    """The staged table of ``raw`` (registered as view ``raw_<table>``) and its description.

    As :func:`custseq.validate.parse.stage`: the returned frame has ``row_id``, every mapped column parsed, and
    ``<column>__present`` flags for the columns whose parse can fail.

    Raises
    ------
    SchemaError
        If a mapped column cannot be parsed in any row, or its timestamps are ambiguous.
    ConfigError
        If ``cfg.ts_format`` is not a format the Spark engine can read.
    """
    raw_view = f"raw_{cmap.table}"
    raw.createOrReplaceTempView(raw_view)
    types = {name: type_class(t) for name, t in raw.dtypes}
    parsed: dict[str, tuple[str, bool, str | None]] = {}
    past = "true"
    if "ts" in cmap.canonical:
        src = cmap.canonical["ts"]
        parsed["ts"] = _timestamp_expr(
            spark, raw_view, src, types[src], cfg.ts_format, column_label(cmap, "ts"), before
        )
        if before is not None:
            past = f"({parsed['ts'][0]}) < {literal(before)}"
    facts = _facts(spark, raw_view, cmap, types, past)

    def extra(name: str, src: str) -> tuple[str, Kind]:
        kind = _infer_extra_kind(src, types[src], name in cmap.text_hints, max_category_share, facts)
        return _extra_expr(src, types[src], kind), kind

    dialect = Dialect(
        parse=lambda name, src, kind: _parse_expr(
            spark, raw_view, src, types[src], kind, cfg, column_label(cmap, name), facts
        ),
        present=lambda src: _present(src, types[src]),
        number=lambda src: _number(src, types[src]),
        extra=extra,
    )
    select = staging_select(cmap, parsed, dialect)
    staged = spark.sql(f"SELECT {select.sql} FROM {raw_view}")
    _refuse_unparsable_columns(spark, staged, raw_view, cmap, select.checked)
    integer = bool(facts.get(("integer", cmap.canonical.get("customer_id", ""))))
    sql_name = f"stg_{cmap.table}"
    staged.createOrReplaceTempView(sql_name)
    return Staged(cmap.table, sql_name, raw_view, select.kinds, select.checked, select.notes, integer), staged


def _row(spark: SparkSession, sql: str) -> tuple:
    return tuple(spark.sql(sql).collect()[0])


def _present(src: str, dtype: str) -> str:
    col = quote_ident(src)
    if dtype == TEXT:
        return f"{col} IS NOT NULL AND trim({col}) <> ''"
    if dtype == FLOAT:
        return f"{col} IS NOT NULL AND NOT isnan({col})"
    return f"{col} IS NOT NULL"


def _number(src: str, dtype: str) -> str:
    col = quote_ident(src)
    if dtype == TEXT:
        return f"CASE WHEN {full_match(f'trim({col})', NUMBER_PATTERN)} THEN try_cast(trim({col}) AS DOUBLE) END"
    if dtype == FLOAT:
        return f"CASE WHEN isnan({col}) THEN NULL ELSE CAST({col} AS DOUBLE) END"
    return f"try_cast({col} AS DOUBLE)"


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST({col} AS STRING)), '')"


def _placeholder(expr: str) -> str:
    return f"lower({expr}) IN ({', '.join(literal(w) for w in PLACEHOLDER_IDS)})"


def _parse_expr(
    spark: SparkSession,
    raw: str,
    src: str,
    dtype: str,
    kind: Kind,
    cfg: ValidationConfig,
    label: str,
    facts: dict[tuple[str, str], object],
) -> tuple[str, bool, str | None]:
    col = quote_ident(src)
    if kind is Kind.ID:
        return _id_expr(src, dtype, facts), False, None
    if kind is Kind.TIMESTAMP:
        return _timestamp_expr(spark, raw, src, dtype, cfg.ts_format, label, None)
    if kind is Kind.NUMBER:
        return _number(src, dtype), dtype in (TEXT, FLOAT), None
    if kind is Kind.BOOLEAN:
        if dtype == BOOLEAN:
            return col, False, None
        if dtype == TEXT:
            t, f = ", ".join(map(literal, TRUE_WORDS)), ", ".join(map(literal, FALSE_WORDS))
            expr = f"CASE WHEN lower(trim({col})) IN ({t}) THEN true WHEN lower(trim({col})) IN ({f}) THEN false END"
            return expr, True, None
        return f"(try_cast({col} AS DOUBLE) <> 0)", False, None
    return _text(col), False, None


def _facts(
    spark: SparkSession, raw: str, cmap: ColumnMap, types: dict[str, str], past: str
) -> dict[tuple[str, str], object]:
    """Every decision of the past rows that staging needs, in one pass: whether text ids are all written as whole
    floats (17850.0), whether the customer ids are integers (:func:`custseq.validate.parse.integer_ids`), and the
    counts that give an extra text column its kind."""
    aggregates: dict[tuple[str, str], str] = {}
    spec = TABLES[cmap.table]
    for name, src in cmap.canonical.items():
        col, dtype = quote_ident(src), types[src]
        if spec.column(name).kind is Kind.ID and dtype == TEXT:
            text = _text(col)
            where = f"{text} IS NOT NULL AND NOT {_placeholder(text)} AND ({past})"
            aggregates[("float_ints", src)] = f"bool_and({text} RLIKE {literal(FLOAT_INT_ID)}) FILTER (WHERE {where})"
        if name == "customer_id":
            for i, (check, present) in enumerate(_integer_checks(col, dtype)):
                aggregates[(f"integer{i}", src)] = f"bool_and({check}) FILTER (WHERE {present} AND ({past}))"
    for src in cmap.extras.values():
        if types[src] == TEXT:
            col = quote_ident(src)
            where = f"trim({col}) <> '' AND ({past})"
            number = full_match(f"trim({col})", NUMBER_PATTERN)
            aggregates[("n", src)] = f"count({col}) FILTER (WHERE {where})"
            aggregates[("n_number", src)] = f"count_if({number}) FILTER (WHERE {where})"
            aggregates[("n_distinct", src)] = f"count(DISTINCT CASE WHEN {where} THEN {col} END)"
    if not aggregates:
        return {}
    values = _row(spark, f"SELECT {', '.join(aggregates.values())} FROM {raw}")
    facts: dict[tuple[str, str], object] = {k: v for k, v in zip(aggregates, values, strict=True)}
    for src in cmap.canonical.values():
        checks = [facts.pop((f"integer{i}", src), None) for i in range(2)]
        facts[("integer", src)] = any(bool(c) for c in checks)
    return facts


def _integer_checks(col: str, dtype: str) -> list[tuple[str, str]]:
    """(check, present) pairs of :func:`custseq.validate.parse.integer_ids`: the ids are integers when every
    present value passes one of the checks."""
    if dtype == INTEGER:
        return [(f"abs({col}) <= {INT64_MAX}", f"{col} IS NOT NULL")]
    if dtype == FLOAT:
        present = f"NOT isnan({col}) AND abs({col}) <> double('inf')"
        return [(f"{col} = round({col}) AND abs({col}) <= {INT64_MAX}", present)]
    if dtype == TEXT:
        number = "-?(0|[1-9][0-9]{0,17})"
        present = f"trim({col}) <> ''"
        return [(full_match(f"trim({col})", number), present), (full_match(f"trim({col})", number + r"\.0+"), present)]
    return []


def _id_expr(src: str, dtype: str, facts: dict[tuple[str, str], object]) -> str:
    col = quote_ident(src)
    if dtype == FLOAT:
        whole = f"CAST(CAST({col} AS DECIMAL(38, 0)) AS STRING)"
        return (
            f"CASE WHEN isnan({col}) OR abs({col}) = double('inf') THEN NULL "
            f"WHEN {col} = round({col}) AND abs({col}) < 1e38 THEN {whole} ELSE CAST({col} AS STRING) END"
        )
    text = _text(col)
    if dtype == TEXT and facts.get(("float_ints", src)):
        return f"regexp_replace({text}, {literal(FLOAT_INT_SUFFIX)}, '')"
    return text


def _timestamp_expr(
    spark: SparkSession, raw: str, src: str, dtype: str, ts_format: str | None, label: str, before: dt.datetime | None
) -> tuple[str, bool, str | None]:
    col = quote_ident(src)
    if dtype == ZONED:
        return f"CAST({col} AS TIMESTAMP_NTZ)", False, "time zone converted to UTC"
    if dtype in (TIMESTAMP, DATE):
        return f"CAST({col} AS TIMESTAMP_NTZ)", False, None
    text = f"trim(CAST({col} AS STRING))"
    expr, note = _configured(text, ts_format) if ts_format else _detect(spark, raw, text, label, before)
    return expr, True, note


def _configured(text: str, fmt: str) -> tuple[str, str | None]:
    if fmt in timestamps.EPOCH_UNITS:
        micros = f"try_cast(try_cast({text} AS DOUBLE) * {timestamps.EPOCH_UNITS[fmt]} AS BIGINT)"
        reading = f"CAST(timestamp_micros({micros}) AS TIMESTAMP_NTZ)"
        expr = f"CASE WHEN {full_match(text, timestamps.NUMBER)} THEN {reading} END"
        return expr, f"Unix times ({fmt}, configured)"
    java = _java_pattern(fmt)
    if java is None:
        raise ConfigError(
            f"validation.ts_format {fmt!r}: the Spark engine reads formats of %Y %m %d %H %M %S and literal "
            "characters (or epoch_s / epoch_ms / epoch_us / epoch_ns); use engine duckdb for other formats"
        )
    return f"CAST(try_to_timestamp({text}, {literal(java)}) AS TIMESTAMP_NTZ)", f"format {fmt} (configured)"


def _detect(spark: SparkSession, raw: str, text: str, label: str, before: dt.datetime | None) -> tuple[str, str | None]:
    """:func:`custseq.validate.timestamps.detect` on Spark: the distinct values vote, the past decides."""
    cols = ", ".join(f"{r.sql('s')} AS r{i}" for i, r in enumerate(READINGS))
    readings = spark.sql(
        f"SELECT s, n, {cols} FROM (SELECT s, count(*) AS n FROM (SELECT {text} AS s FROM {raw}) "
        "WHERE s IS NOT NULL AND s <> '' GROUP BY s)"
    ).cache()
    readings.createOrReplaceTempView("__ts_readings")
    try:
        voter, votes, zoned = _votes(spark, before)
        if before is not None and not any(votes):
            voter, votes, zoned = _votes(spark, None)
        return _choose(spark, voter, votes, zoned, text, label)
    finally:
        readings.unpersist()
        spark.catalog.dropTempView("__ts_readings")


def _votes(spark: SparkSession, before: dt.datetime | None) -> tuple[str, list[int], bool]:
    voter = f"coalesce({', '.join(f'r{i}' for i in range(len(READINGS)))}) IS NOT NULL"
    if before is not None:
        voter += "".join(f" AND coalesce(r{i} < {literal(before)}, true)" for i in range(len(READINGS)))
    counts = [f"coalesce(sum(n) FILTER (WHERE {voter} AND r{i} IS NOT NULL), 0)" for i in range(len(READINGS))]
    zoned = f"count(*) FILTER (WHERE {voter} AND r0 IS NOT NULL AND {full_match('s', timestamps.ISO_ZONED)})"
    row = _row(spark, f"SELECT {', '.join(counts)}, {zoned} FROM __ts_readings")
    return voter, [int(v) for v in row[:-1]], bool(row[-1])


def _choose(
    spark: SparkSession, voter: str, votes: list[int], zoned: bool, text: str, label: str
) -> tuple[str, str | None]:
    """:func:`custseq.validate.timestamps._choose`, with its messages."""
    best = max(range(len(READINGS)), key=lambda i: (votes[i], -i))
    chosen = READINGS[best]
    if not votes[best]:
        return chosen.sql(text), None
    if not chosen.usable:
        examples = _examples(spark, f"{voter} AND r{best} IS NOT NULL")
        raise SchemaError(timestamps._refusal(chosen.name, label, examples))
    twin = timestamps._twin(best)
    if twin is not None and votes[twin] == votes[best]:
        examples = _examples(spark, f"{voter} AND r{best} IS NOT NULL AND r{twin} IS NOT NULL")
        month_first, day_first = sorted((chosen.name, READINGS[twin].name), key=lambda f: f.index("%d"), reverse=True)
        raise SchemaError(
            f"{label}: the day/month order of its dates cannot be told, e.g. {examples} (every date up to the "
            f'as-of date reads both ways); set [validation] ts_format = "{day_first}" if days come first, or '
            f'"{month_first}" if months do'
        )
    if chosen.name == timestamps.ISO:
        note = (
            f"{timestamps.ISO} with time-zone offsets, converted to UTC"
            if zoned
            else f"format {timestamps.ISO} detected"
        )
    else:
        note = f"format {chosen.name} detected"
    return chosen.sql(text), note


def _examples(spark: SparkSession, where: str) -> list[str]:
    return [r[0] for r in spark.sql(f"SELECT s FROM __ts_readings WHERE {where} ORDER BY n DESC, s LIMIT 3").collect()]


def _infer_extra_kind(
    src: str, dtype: str, text_hint: bool, max_share: float, facts: dict[tuple[str, str], object]
) -> Kind:
    if dtype in (INTEGER, FLOAT, DECIMAL):
        return Kind.NUMBER
    if dtype == BOOLEAN:
        return Kind.CATEGORY
    if dtype != TEXT:
        return Kind.TEXT
    n, n_num, n_distinct = (int(facts[(key, src)] or 0) for key in ("n", "n_number", "n_distinct"))  # type: ignore[call-overload]
    if n and n_num == n:
        return Kind.NUMBER
    if text_hint or (n and n_distinct / n > max_share):
        return Kind.TEXT
    return Kind.CATEGORY


def _extra_expr(src: str, dtype: str, kind: Kind) -> str:
    if kind is Kind.NUMBER:
        return _number(src, dtype)
    return _text(quote_ident(src))


def _refuse_unparsable_columns(
    spark: SparkSession, staged: DataFrame, raw: str, cmap: ColumnMap, checked: tuple[str, ...]
) -> None:
    if not checked:
        return
    staged.createOrReplaceTempView("__stg_check")
    aggs = ", ".join(f"count_if({quote_ident(n + '__present')}), count({quote_ident(n)})" for n in checked)
    row = _row(spark, f"SELECT {aggs} FROM __stg_check")
    for i, name in enumerate(checked):
        present, parsed = row[2 * i], row[2 * i + 1]
        if present and not parsed:
            src = cmap.canonical.get(name) or " × ".join(cmap.amount_product or ())
            first = quote_ident(src.split(" × ")[0])
            examples = [
                r[0]
                for r in spark.sql(
                    f"SELECT DISTINCT CAST({first} AS STRING) FROM {raw} WHERE {first} IS NOT NULL LIMIT 3"
                ).collect()
            ]
            hint = (
                'set [validation] ts_format (e.g. "%d/%m/%Y") or map another column'
                if name in ("ts", "signup_ts")
                else f"map another column with --column {name}=<column>"
            )
            raise SchemaError(
                f"{cmap.table} column {src!r} (used as {name}) could not be parsed in any row, e.g. {examples}; {hint}"
            )
