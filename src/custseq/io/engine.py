"""The embedded engine: a DuckDB connection configured for custseq."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa

from custseq.config import EngineConfig
from custseq.errors import ConfigError

SESSION_SETTINGS = "SET TimeZone = 'UTC'"  # per session: a cursor does not inherit it


def connect(cfg: EngineConfig | None = None) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with custseq's engine settings.

    Timestamps are normalised to naive UTC by the readers, so the session time zone is set to UTC
    to keep any implicit conversion deterministic. DuckDB holds at most ``memory_limit`` (default
    :func:`default_memory_limit`) and spills what does not fit to ``temp_directory`` (default
    :func:`default_spill_directory`), so that a table larger than memory is prepared out of core.
    """
    cfg = cfg or EngineConfig()
    con = duckdb.connect(":memory:")
    con.execute(SESSION_SETTINGS)
    if cfg.threads:
        con.execute(f"SET threads = {int(cfg.threads)}")
    con.execute(f"SET memory_limit = '{_safe_setting(cfg.memory_limit or default_memory_limit())}'")
    spill = cfg.temp_directory or str(default_spill_directory())
    con.execute(f"SET temp_directory = '{_safe_setting(spill)}'")
    return con


DUCKDB_MEMORY_SHARE = 0.5  # of the machine's memory; the rest is for the Arrow tables, pandas and torch of custseq


def default_memory_limit() -> str:
    """DuckDB's memory limit when the config sets none: half of :func:`machine_memory_bytes`, in MiB.

    DuckDB's own default (80%) counts only its buffer pool, while custseq's process also holds the Arrow and
    pandas tables it fetches and, in ``predict``, the model; half leaves them room.
    """
    return f"{int(machine_memory_bytes() * DUCKDB_MEMORY_SHARE) // 2**20}MiB"


def machine_memory_bytes() -> int:
    """The memory this process may use: the machine's (psutil), or its container's cgroup limit when lower."""
    total = int(psutil.virtual_memory().total)
    limit = _cgroup_memory_limit()
    return min(total, limit) if limit else total


_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def _cgroup_memory_limit() -> int | None:
    # cgroup v2, then v1; "max" (v2) or a huge number (v1) means no limit, which min() above ignores
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        return int(text) if text.isdigit() else None
    return None


def default_spill_directory() -> Path:
    """A folder of its own for one connection's spill files, in the system temp dir (``TMPDIR``).

    DuckDB creates it only when it spills and removes it when the connection closes; a folder per connection
    keeps that removal from touching another run's files (DuckDB's default is ``.tmp`` in the working folder).
    """
    return Path(tempfile.gettempdir()) / f"custseq-spill-{uuid.uuid4().hex[:12]}"


SIZE_UNITS = {"bytes": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
SIZE_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's memory limit on ``con``, in bytes (read from the setting as DuckDB prints it, e.g. ``11.7 GiB``)."""
    text = str(fetch_scalar(con, "SELECT current_setting('memory_limit')"))
    match = re.fullmatch(r"\s*([\d.]+)\s*(\w+)\s*", text)
    if match is None or match.group(2) not in SIZE_UNITS:  # not a size: take it as no limit
        return 2**62
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


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
