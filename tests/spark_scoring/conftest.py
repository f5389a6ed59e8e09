"""One local SparkSession for the Spark scoring and TorchDistributor tests (the JVM start is the slow part).

The fixture is ``spark_session`` (not ``spark``, which tests/spark/conftest.py defines for the preparation
engine's tests); without Java or pyspark the tests skip and say which is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def missing_requirement() -> str | None:
    """Why Spark cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'custseq[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java is not installed (make java installs Debian's openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark_session() -> Iterator[SparkSession]:
    """A ``local[2]`` SparkSession: two shuffle partitions, UTC session time, no UI, this interpreter's workers."""
    if reason := missing_requirement():
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    # Spark's Python workers run `python3` from PATH unless told otherwise: they must import this custseq
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("custseq-scoring-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()
