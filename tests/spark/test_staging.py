"""Where Spark tasks leave their window outputs, and how a retried task's file stays whole and single."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from custseq.config import EngineConfig, RunConfig
from custseq.errors import ConfigError
from custseq.spark import partitions
from custseq.spark.prepare import STAGING_DIR, staging_folder

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")


def _session(master: str) -> SimpleNamespace:
    return SimpleNamespace(sparkContext=SimpleNamespace(master=master))


def _config(staging_dir: str | None = None) -> RunConfig:
    return dataclasses.replace(RunConfig(), engine=EngineConfig(name="spark", spark_staging_dir=staging_dir))


def test_a_local_master_stages_beside_the_output_and_clears_what_a_stopped_run_left(tmp_path: Path) -> None:
    left = tmp_path / STAGING_DIR / "part-00003"
    left.mkdir(parents=True)
    (left / "0000-features.parquet").write_bytes(b"old")
    with staging_folder(_session("local[2]"), _config(), tmp_path) as folder:
        assert folder == tmp_path / STAGING_DIR
        assert folder.is_dir() and not any(folder.iterdir())
    assert not folder.exists()


def test_a_cluster_stages_in_a_new_folder_of_the_shared_one_or_sends_outputs_to_the_driver(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    with pytest.raises(RuntimeError), staging_folder(_session("yarn"), _config(str(shared)), tmp_path / "out") as f:
        assert f is not None and f.parent == shared and f.name.startswith("custseq-") and f.is_dir()
        raise RuntimeError("a task failed")
    assert shared.is_dir() and not any(shared.iterdir()), "removed on failure too"
    with staging_folder(_session("spark://head:7077"), _config(), tmp_path / "out") as folder:
        assert folder is None


def test_a_staged_output_is_one_whole_file_whichever_attempt_wrote_it(tmp_path: Path, monkeypatch) -> None:
    first, second = pa.table({"customer_id": ["a", "b"], "x": [1.0, 2.0]}), pa.table({"customer_id": ["a"], "x": [3.0]})
    for attempt, table in enumerate((first, second)):  # a retry writes the same partition's output again
        context = SimpleNamespace(partitionId=lambda: 7, attemptNumber=lambda a=attempt: a)
        monkeypatch.setattr("pyspark.TaskContext.get", lambda c=context: c)
        batch = partitions._staged("features", "2024-01-31", table, str(tmp_path), 2)
    row = batch.to_pylist()[0]
    assert row["payload"] is None and row["kind"] == "features" and row["key"] == "2024-01-31"
    assert [p.name for p in (tmp_path / "part-00007").iterdir()] == ["0002-features.parquet"]
    assert partitions.read_output(row["payload"], row["path"]).equals(second)
    inline = partitions._inline("features", "2024-01-31", first).to_pylist()[0]
    assert inline["path"] is None and partitions.read_output(inline["payload"], None).equals(first)


def test_a_staging_folder_given_as_a_url_is_refused_with_what_to_give() -> None:
    with pytest.raises(ConfigError, match=r"folder path the driver and executors have mounted.*/dbfs/tmp/custseq"):
        EngineConfig(name="spark", spark_staging_dir="s3://bucket/tmp")
