"""The SparkSession custseq runs on: the active one (a cluster's), or a new one at a master URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from custseq.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Spark's settings that custseq's SQL relies on: timestamps without a zone are read and written as they are,
# like DuckDB's TIMESTAMP, whatever the machine's time zone.
SESSION_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
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

    builder = SparkSession.builder.master(master).appName(app_name).config("spark.ui.enabled", "false")
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    session = builder.getOrCreate()
    for key, value in SESSION_SETTINGS.items():
        session.conf.set(key, value)
    return session
