"""The SparkSession custseq runs on: the active one (a cluster's), or a new one at a master URL."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from custseq.errors import ConfigError, EngineError

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
# The driver JVM of a session custseq starts exits when its heap runs out. Otherwise only the thread that failed
# dies (measured: a task-result getter, at 5M customers on local[2] with 12g) and the job waits for it forever.
DRIVER_JAVA_OPTIONS = "-XX:+ExitOnOutOfMemoryError"
LOST_CONNECTION = (EOFError, ConnectionError)  # what PySpark raises, or prints, when the driver's sockets close
LOST_DRIVER_WAIT_S = 10.0  # the connection to a dying JVM breaks a moment before its process has ended
OUT_OF_MEMORY_HINT = (
    "give the driver more memory (PYSPARK_SUBMIT_ARGS='--driver-memory 16g pyspark-shell', or spark.driver.memory; "
    "in local mode the executors and their cached input share it); on a cluster, give [engine] spark_staging_dir "
    "a shared folder, or lower [engine] spark_partition_rows (without it, each task's outputs are sent to the driver)"
)

# How a job fails when the tasks' results do not fit the driver (the outputs sent inline, on a cluster without
# [engine] spark_staging_dir): over spark.driver.maxResultSize, or a result dropped before the driver fetched it.
RESULTS_TOO_LARGE = ("spark.driver.maxResultSize", "TaskResultLost")
RESULTS_TOO_LARGE_HINT = (
    "give [engine] spark_staging_dir a folder the driver and every executor have mounted (the tasks then write their "
    "outputs there), or lower [engine] spark_partition_rows, or raise spark.driver.maxResultSize"
)


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
    A driver this call starts runs with :data:`DRIVER_JAVA_OPTIONS` unless ``PYSPARK_SUBMIT_ARGS`` sets driver
    Java options.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    if master.startswith("local"):  # the tasks run custseq's code: in this Python, with its packages
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    if not _driver_java_options_given():  # a JVM already running keeps its own; the user's options win
        builder = builder.config("spark.driver.extraJavaOptions", DRIVER_JAVA_OPTIONS)
    session = builder.getOrCreate()
    quiet_when_the_driver_ends(session.sparkContext)
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


def _driver_java_options_given() -> bool:
    submit = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return "--driver-java-options" in submit or "spark.driver.extraJavaOptions" in submit


@contextlib.contextmanager
def driver_stops_as_error(what: str) -> Iterator[None]:
    """Any failure while the Spark driver's JVM has stopped (out of memory: it exits, see above), or of tasks whose
    results did not fit the driver (:data:`RESULTS_TOO_LARGE`), raised as an :class:`EngineError` that says so and
    what to change; other failures pass unchanged."""
    try:
        yield
    except Exception as e:
        code = driver_exit_code(wait=LOST_DRIVER_WAIT_S if _lost_connection(e) else 0.0)
        if code is None:
            if any(sign in str(e) for sign in RESULTS_TOO_LARGE):
                raise EngineError(
                    f"the Spark tasks' results did not fit the driver while {what}: {RESULTS_TOO_LARGE_HINT}"
                ) from e
            raise
        raise EngineError(
            f"Spark's driver stopped (exit code {code}) while {what}: most likely out of memory (its log above "
            f"says java.lang.OutOfMemoryError); {OUT_OF_MEMORY_HINT}"
        ) from e


def quiet_when_the_driver_ends(context: Any) -> None:
    """PySpark's accumulator server prints a traceback when its connection from the driver ends (the driver exited);
    :func:`driver_stops_as_error` says that in one line instead. Its other errors are printed as before."""
    server = getattr(context, "_accumulatorServer", None)
    if server is None or getattr(server, "quiet_when_the_driver_ends", False):
        return
    loud = server.handle_error  # socketserver's hook for a request that raised, called inside its except block

    def handle_error(request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], LOST_CONNECTION):
            loud(request, client_address)

    server.handle_error = handle_error
    server.quiet_when_the_driver_ends = True


def _lost_connection(error: BaseException) -> bool:
    return isinstance(error, LOST_CONNECTION) or type(error).__module__.startswith("py4j")


def driver_exit_code(wait: float = 0.0) -> int | None:
    """The exit code of the driver JVM this Python started, or None while it runs (after waiting up to ``wait``
    seconds for it to end) or when another process started it."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None) if gateway is not None else None
    if process is None:
        return None
    try:
        return process.wait(timeout=wait) if wait else process.poll()
    except subprocess.TimeoutExpired:
        return None
