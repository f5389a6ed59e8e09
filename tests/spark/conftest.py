"""One local SparkSession for every Spark test (JVM start is the slow part, so it is shared).

Tests under ``tests/spark/`` ask for the session-scoped ``spark`` fixture; without Java or pyspark they skip and
say which is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _missing_requirement() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'custseq[spark]')"
    if shutil.which("java") is None:
        return "Java is not installed (make java installs Debian's openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A ``local[2]`` SparkSession with two shuffle partitions, UTC session time and no UI."""
    if reason := _missing_requirement():
        pytest.skip(reason)
    from custseq.spark.session import local_session

    session = local_session("local[2]", app_name="custseq-tests", shuffle_partitions=2)
    yield session
    session.stop()
