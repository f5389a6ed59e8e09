"""The SparkSession custseq runs on: the active one (a cluster's), or a new one at a master URL."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from custseq.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Spark's settings that custseq's SQL relies on: timestamps without a zone are read and written as they are,
# like DuckDB's TIMESTAMP, whatever the machine's time zone.
# "x" is an identifier, as in DuckDB, so that SQL shared with DuckDB (schema.quote_ident) reads the same.
SESSION_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
}


def require_pyspark() -> None:
    """Raise ConfigError naming the extra when pyspark is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "engine 'spark' needs pyspark and Java 17: pip install 'custseq[spark]' (and a Java runtime), "
            "or use engine 'duckdb'"
        ) from exc


def local_session(master: str, *, app_name: str = "custseq", shuffle_partitions: int | None = None) -> SparkSession:
    """A SparkSession at ``master`` (``local[2]``, ``spark://host:7077``, ``yarn``...) with custseq's settings.

    An active session with the same master is reused (``getOrCreate``); the settings above are applied to it.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    if master.startswith("local"):  # the tasks run custseq's code: in this Python, with its packages
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    for key, value in SESSION_SETTINGS.items():
        session.conf.set(key, value)
    return session


def session_for(master: str | None) -> SparkSession:
    """The session preparation runs on: the active one when ``master`` is None (a cluster notebook's, or one the
    caller built), else a session at ``master``; with neither, a local one on every core."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if master is None and active is not None:
        for key, value in SESSION_SETTINGS.items():
            active.conf.set(key, value)
        return active
    return local_session(master or "local[*]")
