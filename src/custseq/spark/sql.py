"""DuckDB SQL of the shared rule predicates, read as Spark SQL.

The validation rules (:mod:`custseq.validate.rules`) are written once, in the SQL both engines share:
comparisons, ``CASE``, ``coalesce``, ``lower``, subqueries, window functions. Only the few DuckDB names below
differ, and they are rewritten here by name, not by a general transpiler: SQLGlot (not a dependency) would be
the general tool, but it is known to drop the ``ORDER BY`` of ordered aggregates, and the predicates need no
more than this table. Bound values (``$name``) become Spark literals, so no value depends on the Python
process's time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from custseq.errors import ConfigError

# DuckDB function -> Spark SQL, for a call whose one argument is an identifier or a bound value.
_CALLS = {
    "isfinite": "(NOT isnan({0}) AND abs({0}) <> double('inf'))",
    "to_days": "make_dt_interval({0})",
}
_RENAMED = {"list_contains(": "array_contains(", "regexp_full_match(": "__full_match("}
_ARGUMENT = r"(\$?[A-Za-z_][A-Za-z0-9_]*)"


def literal(value: Any) -> str:
    """A Python value as a Spark SQL literal (timestamps without a zone, like custseq's)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP_NTZ '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return f"array({', '.join(literal(v) for v in value)})" if value else "array()"
    raise TypeError(f"no Spark literal for {type(value).__name__}")


def full_match(expr: str, pattern: str) -> str:
    """Spark SQL: text ``expr`` matches the regular expression ``pattern`` in full (DuckDB's regexp_full_match)."""
    return f"({expr} RLIKE {literal('^(?:' + pattern + ')$')})"


def bind(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with every ``$name`` replaced by the literal of ``params[name]`` (longest names first)."""
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace(f"${name}", literal(params[name]))
    if leftover := re.search(r"\$[A-Za-z_]\w*", sql):
        raise ValueError(f"SQL parameter {leftover.group()} is not bound")
    return sql


def _call(template: str) -> Callable[[re.Match[str]], str]:
    return lambda match: template.format(match.group(1))


def spark_sql(duckdb_sql: str, params: Mapping[str, Any] | None = None) -> str:
    """A DuckDB predicate or query of the shared subset, as Spark SQL with its values bound.

    Raises
    ------
    ConfigError
        If the SQL uses a DuckDB function this table does not rewrite (a rule added without its Spark form).
    """
    sql = duckdb_sql
    for name, template in _CALLS.items():
        sql = re.sub(rf"\b{name}\({_ARGUMENT}\)", _call(template), sql)
    for duck, spark in _RENAMED.items():
        sql = sql.replace(duck, spark)
    sql = re.sub(r"__full_match\(([^,]+), '([^']*)'\)", lambda m: full_match(m.group(1), m.group(2)), sql)
    if unknown := re.search(r"\b(list_\w+|isfinite|to_days|epoch|strptime|regexp_full_match)\(", sql):
        raise ConfigError(f"the Spark engine cannot run the DuckDB function {unknown.group(1)!r} of a rule yet")
    return bind(sql, params or {})
