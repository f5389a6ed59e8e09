"""The embedded engine: a DuckDB connection configured for custseq."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from custseq.config import EngineConfig
from custseq.errors import ConfigError

SESSION_SETTINGS = "SET TimeZone = 'UTC'"  # per session: a cursor does not inherit it


def connect(cfg: EngineConfig | None = None) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with custseq's engine settings.

    Timestamps are normalised to naive UTC by the readers, so the session time zone is set to UTC
    to keep any implicit conversion deterministic.
    """
    cfg = cfg or EngineConfig()
    con = duckdb.connect(":memory:")
    con.execute(SESSION_SETTINGS)
    if cfg.threads:
        con.execute(f"SET threads = {int(cfg.threads)}")
    if cfg.memory_limit:
        con.execute(f"SET memory_limit = '{_safe_setting(cfg.memory_limit)}'")
    if cfg.temp_directory:
        con.execute(f"SET temp_directory = '{_safe_setting(cfg.temp_directory)}'")
    return con


def session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new session on ``con``'s database, set up as :func:`connect` sets one; close it when done.

    It has its own temporary tables and views (they go when it is closed), so sessions of one connection may run
    at the same time in different threads; the engine settings (threads, memory) are the database's.
    """
    cursor = con.cursor()
    cursor.execute(SESSION_SETTINGS)
    return cursor


def _safe_setting(value: str) -> str:
    # SET does not take bound parameters; refuse anything that could break out of the quoted literal.
    if "'" in value or ";" in value:
        raise ConfigError(f"engine setting {value!r} may not contain quotes or semicolons")
    return value


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> pa.Table:
    """Run a query and return its whole result as an Arrow table."""
    return con.sql(sql, params=params or None).to_arrow_table()


def fetch_row(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> tuple:
    """Run a query that returns one row and return it (the result is fully drained)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0]


def fetch_scalar(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> Any:
    """Run a query that returns one value and return it."""
    return fetch_row(con, sql, params)[0]


def drop_tables(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop intermediate tables to give their memory back (missing ones are ignored)."""
    for name in names:
        con.execute(f"DROP TABLE IF EXISTS {name}")


EXACT_DECIMAL = "DECIMAL(38, 12)"


def exact_sum_sql(expr: str, where: str | None = None) -> str:
    """SQL of a sum that does not depend on how DuckDB splits the rows across threads.

    Float sums are combined in whatever order the threads finish, so their last bits vary from run to run;
    values rounded to 1e-12 and summed as decimals are exact, hence reproducible (and cheap in DuckDB).
    """
    condition = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({expr} AS {EXACT_DECIMAL})){condition} AS DOUBLE)"
