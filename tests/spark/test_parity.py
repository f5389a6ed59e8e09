"""Spark and DuckDB prepare the same folder: features, labels, sequences, vocabulary, quarantine and accounts.

Two data sets: a CDNOW slice read from Parquet (typed columns, dates without a time of day, duplicates kept), and
a synthetic shop read from CSV with every optional column (orders, products, categories, channels, quantity,
cost, refunds, currency, extra columns, customers with profiles, events) and rows planted to break each rule.
Spark runs with small partitions, so that every customer-range stage crosses partitions.

Tolerance: that of tests/prepared_alike.py (features to relative 1e-9, everything else exactly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.prepared_alike import CDNOW_CONFIG, SHOP_CONFIG, assert_same_preparation, cdnow_slice, shop_files

import custseq.spark  # noqa: F401  (makes engine "spark" available to prepare)
import custseq.spark.prepare as spark_prepare
from custseq.config import EngineConfig, RunConfig, WindowConfig
from custseq.errors import ConfigError, DataReadError
from custseq.io.tables import Tables
from custseq.pipelines.prepare import prepare
from custseq.spark import partitions
from custseq.spark.prepare import STAGING_DIR
from custseq.spark.read import spark_tables

pytestmark = pytest.mark.spark

SPARK = EngineConfig(name="spark", spark_partition_rows=1500)  # a few customer ranges per data set


def _prepare_both(
    tables: Tables, config: RunConfig, tmp: Path, spark_engine: EngineConfig = SPARK
) -> tuple[Path, Path]:
    duck = prepare(tables, config, tmp / "duckdb").out_dir
    spark = prepare(tables, dataclasses.replace(config, engine=spark_engine), tmp / "spark").out_dir
    assert not (spark / STAGING_DIR).exists(), "the tasks' staged outputs are removed once gathered"
    return duck, spark


def test_cdnow_slice_from_parquet_is_prepared_alike(spark, tmp_path):
    path = cdnow_slice(tmp_path, 25)  # ~940 customers, ~2,800 rows
    shared = tmp_path / "shared"  # as a cluster's shared folder: the tasks stage their outputs in a new folder there
    engine = dataclasses.replace(SPARK, spark_staging_dir=str(shared))
    duck, spark_out = _prepare_both(Tables.of(path), CDNOW_CONFIG, tmp_path, engine)
    account = json.loads((duck / "prepare.json").read_text())["tables"]["transactions"]
    assert account["notes"], "the slice keeps exact duplicates (dates without a time), and says so"
    assert_same_preparation(duck, spark_out)
    assert shared.is_dir() and not any(shared.iterdir()), "the staged outputs are removed from the shared folder"


def test_outputs_sent_to_the_driver_without_a_staging_folder_are_prepared_alike(spark, tmp_path, monkeypatch):
    """A cluster without a shared folder: each task's outputs travel inline to the driver."""
    staged = []
    monkeypatch.setattr(spark_prepare, "staging_folder", lambda *_: contextlib.nullcontext(staged.append(1)))
    duck, spark_out = _prepare_both(Tables.of(cdnow_slice(tmp_path, 100)), CDNOW_CONFIG, tmp_path)
    assert staged == [1], "the Spark run asked for its staging folder, and was given none"
    assert_same_preparation(duck, spark_out)


def test_synthetic_shop_from_csv_with_every_optional_column_is_prepared_alike(spark, tmp_path, monkeypatch):
    transactions, customers, events = shop_files(tmp_path)
    read: list[str | None] = []

    def read_output(payload: bytes | None, path: str | None) -> pa.Table:
        read.append(path)
        return partitions.read_output(payload, path)

    monkeypatch.setattr(spark_prepare, "read_output", read_output)
    config = SHOP_CONFIG
    duck, spark_out = _prepare_both(Tables.of(transactions, customers=customers, events=events), config, tmp_path)
    tables = json.loads((duck / "prepare.json").read_text())["tables"]
    assert set(tables["transactions"]["quarantined_by_rule"]) >= {
        "missing_customer_id", "placeholder_customer_id", "unparsable_amount", "missing_ts", "unparsable_ts",
        "absurd_amount", "ts_out_of_range", "ts_far_before_data", "unknown_currency", "unparsable_quantity",
        "unparsable_is_refund", "non_finite_amount", "duplicate_row", "blank_line", "wrong_field_count",
    }  # fmt: skip
    assert tables["transactions"]["quarantined_by_rule"]["blank_line"]["rows"] == 2
    assert tables["transactions"]["quarantined_by_rule"]["wrong_field_count"]["rows"] == 2
    assert set(tables["events"]["quarantined_by_rule"]) >= {"blank_line", "wrong_field_count"}
    assert set(tables["customers"]["quarantined_by_rule"]) == {"duplicate_customer_id", "placeholder_customer_id"}
    assert tables["events"]["flagged_by_rule"]["event_without_transactions"]["rows"] > 0
    assert_same_preparation(duck, spark_out)
    staged = [Path(p) for p in read if p is not None]
    assert len(staged) > len(read) / 2, "a local master's tasks write their window outputs beside the output folder"
    assert all(p.parent.parent == spark_out / STAGING_DIR for p in staged)


def test_event_texts_are_refused_by_the_spark_engine_not_ignored(spark, tmp_path):
    transactions, _, events = shop_files(tmp_path)
    texts = pd.read_csv(events).assign(text="the parcel came late and broken")
    texts.to_csv(events, index=False)
    config = RunConfig(engine=EngineConfig(name="spark"), window=WindowConfig(as_of=dt.date(2023, 1, 31)))
    with pytest.raises(ConfigError, match=r"text column is not read by the Spark engine.*\[text\] enabled = false"):
        prepare(Tables.of(transactions, events=events), config, tmp_path / "spark")


def test_a_table_of_the_sessions_catalog_is_prepared_like_its_file(spark, tmp_path):
    """``table:NAME`` reads a table of the SparkSession's catalog (here a view over the CDNOW slice's Parquet)."""
    path = cdnow_slice(tmp_path, 100)
    spark.read.parquet(str(path)).createOrReplaceTempView("cdnow_orders")
    try:
        duck = prepare(Tables.of(path), CDNOW_CONFIG, tmp_path / "duckdb").out_dir
        spark_config = dataclasses.replace(CDNOW_CONFIG, engine=SPARK)
        spark_out = prepare(spark_tables("table:cdnow_orders"), spark_config, tmp_path / "spark").out_dir
    finally:
        spark.catalog.dropTempView("cdnow_orders")
    account = json.loads((spark_out / "prepare.json").read_text())["tables"]["transactions"]
    assert account["rows_in"] == pq.read_metadata(path).num_rows
    assert_same_preparation(duck, spark_out)


@pytest.mark.parametrize(("name", "message"), [("table:", "names no table"), ("table:no_such_table", "cannot read")])
def test_a_missing_catalog_table_is_refused_with_its_name(spark, tmp_path, name, message):
    config = dataclasses.replace(CDNOW_CONFIG, engine=SPARK)
    with pytest.raises(DataReadError, match=message):
        prepare(spark_tables(name), config, tmp_path / "spark")
