"""The session custseq starts: a driver out of heap ends the command with a clear error instead of a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from custseq.errors import EngineError
from custseq.spark.session import driver_exit_code, driver_stops_as_error, quiet_when_the_driver_ends

# A fresh driver with a small heap collects more than fits. Without the option the task-result getter thread
# dies of OutOfMemoryError and collect() waits forever (seen here: still waiting after 120 s).
OUT_OF_HEAP = textwrap.dedent(
    """
    import sys

    from custseq.errors import EngineError
    from custseq.spark.session import driver_stops_as_error, local_session

    rows = int(sys.argv[1])
    spark = local_session("local[1]", app_name="custseq-out-of-heap")
    try:
        with driver_stops_as_error("collecting"):
            spark.range(0, rows, numPartitions=1).selectExpr("id", "repeat('x', 200) AS s").collect()
        print("collected")
    except EngineError as e:
        print(f"EngineError: {e}")
    """
)


def _collect_in_a_new_driver(submit_args: str, rows: int) -> str:
    """The last line the OUT_OF_HEAP script prints, its driver started with ``submit_args``."""
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"{submit_args} pyspark-shell", "PYSPARK_PYTHON": sys.executable}
    try:
        done = subprocess.run(
            [sys.executable, "-c", OUT_OF_HEAP, str(rows)], env=env, capture_output=True, text=True, timeout=240,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the driver could not take the results and the job hung instead of failing")
    assert done.returncode == 0, done.stdout + done.stderr[:3000]
    return done.stdout.strip().splitlines()[-1]  # after the JVM's own "Terminating due to …OutOfMemoryError" line


def test_a_driver_out_of_heap_stops_with_an_error_that_says_so(spark: object) -> None:
    said = _collect_in_a_new_driver("--driver-memory 512m", 20_000_000)
    assert said.startswith("EngineError: Spark's driver stopped (exit code 3) while collecting"), said
    assert "--driver-memory" in said and "spark_partition_rows" in said


def test_results_over_the_drivers_limit_end_in_an_error_that_says_what_to_change(spark: object) -> None:
    said = _collect_in_a_new_driver("--conf spark.driver.maxResultSize=1m", 200_000)  # about 40 MB of rows
    assert said.startswith("EngineError: the Spark tasks' results did not fit the driver while collecting"), said
    assert "spark_staging_dir" in said and "spark_partition_rows" in said


def test_only_a_stopped_driver_turns_a_failure_into_an_engine_error(
    spark: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert driver_exit_code() is None  # the test session's driver runs
    with pytest.raises(ValueError, match="not the engine"), driver_stops_as_error("testing"):
        raise ValueError("not the engine")
    monkeypatch.setattr("custseq.spark.session.driver_exit_code", lambda wait=0.0: 3)
    with pytest.raises(EngineError, match=r"stopped \(exit code 3\) while testing"), driver_stops_as_error("testing"):
        raise ConnectionError("the gateway closed")


def test_the_accumulator_server_is_quiet_only_about_the_driver_ending() -> None:
    printed: list[type[BaseException] | None] = []

    class Server:  # socketserver's hook, as PySpark's accumulator server has it
        def handle_error(self, request: object, client_address: object) -> None:
            printed.append(sys.exc_info()[0])

    context = SimpleNamespace(_accumulatorServer=Server())
    quiet_when_the_driver_ends(context)
    quiet_when_the_driver_ends(context)  # a reused session: wrapped once
    for error in (EOFError(), ConnectionResetError(), ValueError("a real problem")):
        try:
            raise error
        except Exception:
            context._accumulatorServer.handle_error(None, None)
    assert printed == [ValueError]
    quiet_when_the_driver_ends(SimpleNamespace())  # no server (a context PySpark built otherwise): nothing to do
