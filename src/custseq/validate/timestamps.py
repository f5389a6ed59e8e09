"""The format of a text timestamp column: chosen by the rows before the as-of date, and never guessed.

Candidates are ISO 8601 (with or without a zone, which is converted to UTC) and the strptime formats of
:data:`FORMATS`, each read strictly: the trimmed text must match the format's shape in full, so ``23`` is not a
year, ``01/05/2023 junk`` is not a date and ``2023-01-01 10:00 Europe/Paris`` is not a naive timestamp with its
zone dropped. Two shapes are recognised only to be refused: two-digit years and epoch numbers.

How the past decides
--------------------
Every distinct value is read under every candidate. A value *votes* only when it has at least one reading and
every reading it has is before the cutoff (the midnight after the as-of date). A row dated after the as-of date
in the format it is written in has a reading after the cutoff, so it never votes: adding, deleting or rewriting
later rows, in any of these formats or in none, cannot move the choice. The candidate with the most votes
(rows) wins; on a tie the earlier candidate in :data:`FORMATS` wins. Without a cutoff every readable value votes
(there are no later rows then); with one but no voter at all (every row is later), every readable value votes.

Never a guess
-------------
A :class:`SchemaError` names the column, shows three voting values and the setting that settles it when

* day-first and month-first read the voters equally well (every day is 12 or less), unless one row with a
  day over 12 settles it;
* the years have two digits;
* the values are epoch numbers (``ts_format = "epoch_s"`` and its kin read them).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import duckdb

from custseq.errors import ConfigError, SchemaError
from custseq.io.engine import fetch_row

ISO = "ISO 8601"
# strptime formats tried besides ISO 8601, in order of preference on equal votes; a format with %d and %m has its
# twin (the two swapped) in the list, so that an order the data cannot tell is found and refused.
FORMATS = (
    "%Y%m%d",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y",
    "%m.%d.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
)
# Unix times, for ts_format: the factor to microseconds.
EPOCH_UNITS = {"epoch_s": 1e6, "epoch_ms": 1e3, "epoch_us": 1.0, "epoch_ns": 1e-3}

_ISO_DATE = r"\d{4}-\d{1,2}-\d{1,2}"
_ISO_TIME = r"\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
ISO_PLAIN = rf"{_ISO_DATE}([T ]{_ISO_TIME})?"
# An offset (Z, +02, +02:00, +0200) or a zone name (UTC, CET, Europe/Paris, America/Argentina/Salta).
ISO_ZONED = rf"{_ISO_DATE}[T ]{_ISO_TIME} ?(Z|[+-]\d{{2}}(:?\d{{2}})?|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*)"
TWO_DIGIT_YEAR = r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2}( \d{1,2}:\d{2}(:\d{2})?)?"
EPOCH = r"(\d{9,10}|\d{12,13}|\d{15,16}|\d{18,19})(\.\d+)?"
NUMBER = r"-?\d+(\.\d+)?([eE][+-]?\d+)?"
_STRPTIME_SHAPES = {
    "%Y": r"\d{4}",
    "%m": r"\d{1,2}",
    "%d": r"\d{1,2}",
    "%H": r"\d{1,2}",
    "%M": r"\d{2}",
    "%S": r"\d{2}",
}


@dataclass(frozen=True)
class Candidate:
    """A way to read a text timestamp."""

    name: str  # the format as [validation] ts_format names it, or the shape refused
    pattern: str  # RE2 pattern the trimmed text matches in full
    reading: str  # SQL over $S: the TIMESTAMP the text reads as (the latest it may mean, for a refused shape)
    usable: bool = True  # False: recognised only to be refused

    def sql(self, s: str) -> str:
        """The reading of SQL text ``s``, NULL when the text does not have this candidate's shape."""
        reading = self.reading.replace("$S", s)
        return f"CASE WHEN regexp_full_match({s}, '{self.pattern}') THEN {reading} END"


@dataclass(frozen=True)
class TimestampFormat:
    """The chosen way to read a column: SQL over the trimmed text, and a note for the user."""

    expr: str
    note: str | None


def _iso() -> Candidate:
    zoned = "timezone('UTC', TRY_CAST($S AS TIMESTAMPTZ))"
    reading = f"CASE WHEN regexp_full_match($S, '{ISO_ZONED}') THEN {zoned} ELSE TRY_CAST($S AS TIMESTAMP) END"
    return Candidate(ISO, f"{ISO_PLAIN}|{ISO_ZONED}", reading)


def _strptime(fmt: str) -> Candidate:
    parts = re.split(r"(%[YmdHMS])", fmt)
    compact = not "".join(parts[0::2])  # 20110105: every field has its full width
    shapes = {**_STRPTIME_SHAPES, **({"%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}"} if compact else {})}
    pattern = "".join(shapes.get(p) or re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\1", p) for p in parts)
    return Candidate(fmt, pattern, f"try_strptime($S, '{fmt}')")


def _two_digit_years() -> Candidate:
    yy = r"CAST(regexp_extract($S, '^\d{1,2}[/.-]\d{1,2}[/.-](\d{2})', 1) AS BIGINT)"
    year = f"({yy} + CASE WHEN {yy} <= 68 THEN 2000 ELSE 1900 END)"  # as %y reads them
    return Candidate("two-digit years", TWO_DIGIT_YEAR, f"make_timestamp({year}, 12, 31, 23, 59, 59)", usable=False)


def _epoch_micros(s: str) -> str:
    digits = f"length(split_part({s}, '.', 1))"
    factor = f"CASE WHEN {digits} <= 10 THEN 1e6 WHEN {digits} <= 13 THEN 1e3 WHEN {digits} <= 16 THEN 1 ELSE 1e-3 END"
    return f"TRY_CAST(TRY_CAST({s} AS DOUBLE) * {factor} AS BIGINT)"


def _epoch() -> Candidate:
    return Candidate("epoch numbers", EPOCH, f"make_timestamp({_epoch_micros('$S')})", usable=False)


CANDIDATES = (_iso(), *(_strptime(f) for f in FORMATS), _two_digit_years(), _epoch())


def configured(text: str, fmt: str, con: duckdb.DuckDBPyConnection) -> TimestampFormat:
    """How ``[validation] ts_format`` reads SQL text ``text``.

    Raises
    ------
    ConfigError
        If the format is not one DuckDB's strptime reads.
    """
    if fmt in EPOCH_UNITS:
        micros = f"TRY_CAST(TRY_CAST({text} AS DOUBLE) * {EPOCH_UNITS[fmt]} AS BIGINT)"
        expr = f"CASE WHEN regexp_full_match({text}, '{NUMBER}') THEN make_timestamp({micros}) END"
        return TimestampFormat(expr, f"Unix times ({fmt}, configured)")
    if "'" in fmt:
        raise ConfigError(f"validation.ts_format {fmt!r} may not contain a quote")
    try:
        tz_aware = fetch_row(con, f"SELECT typeof(try_strptime('2000-01-01', '{fmt}'))")[0].endswith("TIME ZONE")
    except duckdb.Error as e:
        why = str(e).splitlines()[0].split(" Error: ", 1)[-1]  # without DuckDB's "Invalid Input Error: "
        raise ConfigError(
            f"validation.ts_format {fmt!r} is not a strptime format ({why}); e.g. %d/%m/%Y, "
            f"or one of {', '.join(EPOCH_UNITS)} for Unix times"
        ) from None
    expr = f"try_strptime({text}, '{fmt}')"
    if tz_aware:  # %z: converted to UTC, as every timestamp custseq works with
        return TimestampFormat(f"timezone('UTC', {expr})", f"format {fmt} (configured), converted to UTC")
    return TimestampFormat(expr, f"format {fmt} (configured)")


def detect(
    con: duckdb.DuckDBPyConnection, raw: str, text: str, label: str, before: dt.datetime | None
) -> TimestampFormat:
    """Choose how to read SQL text ``text`` (trimmed, over table ``raw``) from the values before ``before``.

    ``label`` names the column in messages ("transactions column 'Date' (used as ts)").

    Raises
    ------
    SchemaError
        If the voting values are ambiguous (day/month order), have two-digit years or are epoch numbers.
    """
    values, readings = "__ts_values", "__ts_readings"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {values} AS SELECT s, count(*) AS n "
            f"FROM (SELECT {text} AS s FROM {raw}) WHERE s IS NOT NULL AND s <> '' GROUP BY s"
        )
        cols = ", ".join(f"{c.sql('s')} AS r{i}" for i, c in enumerate(CANDIDATES))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {readings} AS SELECT s, n, {cols} FROM {values}")
        voter, votes, zoned = _votes(con, readings, before)
        if before is not None and not any(votes):  # every value is later: there is no past to decide by
            voter, votes, zoned = _votes(con, readings, None)
        return _choose(con, readings, voter, votes, zoned, text, label)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {readings}")
        con.execute(f"DROP TABLE IF EXISTS {values}")


def _votes(con: duckdb.DuckDBPyConnection, readings: str, before: dt.datetime | None) -> tuple[str, list[int], bool]:
    any_reading = f"coalesce({', '.join(f'r{i}' for i in range(len(CANDIDATES)))}) IS NOT NULL"
    voter = any_reading
    if before is not None:
        at = f"TIMESTAMP '{before.isoformat(sep=' ')}'"
        voter += "".join(f" AND coalesce(r{i} < {at}, true)" for i in range(len(CANDIDATES)))
    counts = [f"coalesce(sum(n) FILTER ({voter} AND r{i} IS NOT NULL), 0)" for i in range(len(CANDIDATES))]
    zoned = f"count(*) FILTER ({voter} AND r0 IS NOT NULL AND regexp_full_match(s, '{ISO_ZONED}'))"
    row = fetch_row(con, f"SELECT {', '.join(counts)}, {zoned} FROM {readings}")
    return voter, [int(v) for v in row[:-1]], bool(row[-1])


def _choose(
    con: duckdb.DuckDBPyConnection,
    readings: str,
    voter: str,
    votes: list[int],
    zoned: bool,
    text: str,
    label: str,
) -> TimestampFormat:
    best = max(range(len(CANDIDATES)), key=lambda i: (votes[i], -i))
    chosen = CANDIDATES[best]
    if not votes[best]:  # nothing reads: the column is refused later, with examples
        return TimestampFormat(chosen.sql(text), None)
    if not chosen.usable:
        examples = _examples(con, readings, f"{voter} AND r{best} IS NOT NULL")
        raise SchemaError(_refusal(chosen.name, label, examples))
    twin = _twin(best)
    if twin is not None and votes[twin] == votes[best]:
        examples = _examples(con, readings, f"{voter} AND r{best} IS NOT NULL AND r{twin} IS NOT NULL")
        month_first, day_first = sorted((chosen.name, CANDIDATES[twin].name), key=lambda f: f.index("%d"), reverse=True)
        raise SchemaError(
            f"{label}: the day/month order of its dates cannot be told, e.g. {examples} (every date up to the "
            f'as-of date reads both ways); set [validation] ts_format = "{day_first}" if days come first, or '
            f'"{month_first}" if months do'
        )
    if chosen.name == ISO:
        note = f"{ISO} with time-zone offsets, converted to UTC" if zoned else f"format {ISO} detected"
    else:
        note = f"format {chosen.name} detected"
    return TimestampFormat(chosen.sql(text), note)


def _twin(i: int) -> int | None:
    name = CANDIDATES[i].name
    if "%d" not in name or "%m" not in name:
        return None
    swapped = name.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    return next((j for j, c in enumerate(CANDIDATES) if c.name == swapped), None)


def _refusal(shape: str, label: str, examples: list[str]) -> str:
    if shape == "two-digit years":
        sep = next((ch for ch in examples[0] if ch in "/.-"), "/") if examples else "/"
        day_first, month_first = f"%d{sep}%m{sep}%y", f"%m{sep}%d{sep}%y"
        return (
            f"{label} has two-digit years, e.g. {examples}, which custseq does not guess; set [validation] "
            f'ts_format = "{month_first}" or "{day_first}" (with " %H:%M" if there is a time)'
        )
    digits = len(examples[0].split(".")[0]) if examples else 10
    unit = "s" if digits <= 10 else "ms" if digits <= 13 else "us" if digits <= 16 else "ns"
    return (
        f"{label} holds numbers, not dates, e.g. {examples}; if they are Unix times set [validation] "
        f'ts_format = "epoch_{unit}" (or epoch_s, epoch_ms, epoch_us, epoch_ns), else map another column'
    )


def _examples(con: duckdb.DuckDBPyConnection, readings: str, where: str) -> list[str]:
    rows = con.execute(f"SELECT s FROM {readings} WHERE {where} ORDER BY n DESC, s LIMIT 3").fetchall()
    return [r[0] for r in rows]
