"""Spark and DuckDB prepare the same folder: features, labels, sequences, vocabulary, quarantine and accounts.

Two data sets: a CDNOW slice read from Parquet (typed columns, dates without a time of day, duplicates kept), and
a synthetic shop read from CSV with every optional column (orders, products, categories, channels, quantity,
cost, refunds, currency, extra columns, customers with profiles, events) and rows planted to break each rule.
Spark runs with small partitions, so that every customer-range stage crosses partitions.

Tolerance: features are floats computed by the same DuckDB SQL on each range of customers, so they agree to
rounding (relative 1e-9); everything else (ids, counts, labels, sequences, quarantine rows) is equal exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import custseq.spark  # noqa: F401  (makes engine "spark" available to prepare)
import custseq.spark.prepare as spark_prepare
from custseq.config import EngineConfig, RunConfig, SequenceConfig, WindowConfig
from custseq.datasets import load_cdnow
from custseq.datasets.synthetic import generate_transactions
from custseq.errors import ConfigError, DataReadError
from custseq.io.tables import Tables
from custseq.pipelines.prepare import prepare
from custseq.sequences.build import read_sequences
from custseq.spark import partitions
from custseq.spark.prepare import STAGING_DIR
from custseq.spark.read import spark_tables

pytestmark = pytest.mark.spark

FEATURE_RTOL = 1e-9
SPARK = EngineConfig(name="spark", spark_partition_rows=1500)  # a few customer ranges per data set


def _prepare_both(
    tables: Tables, config: RunConfig, tmp: Path, spark_engine: EngineConfig = SPARK
) -> tuple[Path, Path]:
    duck = prepare(tables, config, tmp / "duckdb").out_dir
    spark = prepare(tables, dataclasses.replace(config, engine=spark_engine), tmp / "spark").out_dir
    assert not (spark / STAGING_DIR).exists(), "the tasks' staged outputs are removed once gathered"
    return duck, spark


def _assert_tables_equal(a: pa.Table, b: pa.Table, what: str, rtol: float = 0.0) -> None:
    assert a.schema == b.schema, f"{what}: columns or types differ"
    assert a.num_rows == b.num_rows, f"{what}: {a.num_rows} rows against {b.num_rows}"
    for name in a.column_names:
        x, y = a[name].to_pylist(), b[name].to_pylist()
        if x == y:
            continue
        assert rtol and pa.types.is_floating(a.schema.field(name).type), f"{what}: column {name} differs"
        xs = np.array([np.nan if v is None else v for v in x], float)
        ys = np.array([np.nan if v is None else v for v in y], float)
        np.testing.assert_allclose(xs, ys, rtol=rtol, atol=0, equal_nan=True, err_msg=f"{what}: column {name}")


def _assert_same_preparation(duck: Path, spark: Path) -> None:
    a, b = json.loads((duck / "prepare.json").read_text()), json.loads((spark / "prepare.json").read_text())
    for key in ("as_of", "horizon_days", "data_start", "data_end", "tables", "windows", "notes", "sequence"):
        assert a[key] == b[key], f"prepare.json {key} differs"
    assert (duck / "vocab.json").read_text() == (spark / "vocab.json").read_text()
    _assert_tables_equal(pq.read_table(duck / "daily_spend.parquet"), pq.read_table(spark / "daily_spend.parquet"),
                         "daily spend")  # fmt: skip
    for window in a["windows"]:
        wa, wb = duck / "windows" / window["as_of"], spark / "windows" / window["as_of"]
        _assert_tables_equal(pq.read_table(wa / "features.parquet"), pq.read_table(wb / "features.parquet"),
                             f"{window['as_of']} features", FEATURE_RTOL)  # fmt: skip
        assert (wa / "labels.parquet").exists() == (wb / "labels.parquet").exists()
        if (wa / "labels.parquet").exists():
            _assert_tables_equal(pq.read_table(wa / "labels.parquet"), pq.read_table(wb / "labels.parquet"),
                                 f"{window['as_of']} labels")  # fmt: skip
        assert (wa / "prospects.parquet").exists() == (wb / "prospects.parquet").exists()
        if (wa / "prospects.parquet").exists():
            _assert_tables_equal(pq.read_table(wa / "prospects.parquet"), pq.read_table(wb / "prospects.parquet"),
                                 f"{window['as_of']} prospects", FEATURE_RTOL)  # fmt: skip
        _assert_tables_equal(read_sequences(wa / "sequences"), read_sequences(wb / "sequences"),
                             f"{window['as_of']} sequences")  # fmt: skip
        shards = sorted(p.relative_to(wa) for p in wa.rglob("sequences/**/*.parquet"))
        assert shards == sorted(p.relative_to(wb) for p in wb.rglob("sequences/**/*.parquet"))
    quarantined = sorted(p.name for p in (duck / "quarantine").glob("*.parquet"))
    assert quarantined == sorted(p.name for p in (spark / "quarantine").glob("*.parquet"))
    for name in quarantined:
        _assert_tables_equal(pq.read_table(duck / "quarantine" / name), pq.read_table(spark / "quarantine" / name),
                             f"quarantine {name}")  # fmt: skip


def _cdnow_slice(tmp: Path, every: int) -> Path:
    rows = load_cdnow()
    rows = rows[rows["customer_id"].astype(int) % every == 0]
    path = tmp / "cdnow.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), path)
    return path


CDNOW_CONFIG = RunConfig(window=WindowConfig(as_of=dt.date(1998, 6, 30), max_train_windows=2))


def test_cdnow_slice_from_parquet_is_prepared_alike(spark, tmp_path):
    path = _cdnow_slice(tmp_path, 25)  # ~940 customers, ~2,800 rows
    shared = tmp_path / "shared"  # as a cluster's shared folder: the tasks stage their outputs in a new folder there
    engine = dataclasses.replace(SPARK, spark_staging_dir=str(shared))
    duck, spark_out = _prepare_both(Tables.of(path), CDNOW_CONFIG, tmp_path, engine)
    account = json.loads((duck / "prepare.json").read_text())["tables"]["transactions"]
    assert account["notes"], "the slice keeps exact duplicates (dates without a time), and says so"
    _assert_same_preparation(duck, spark_out)
    assert shared.is_dir() and not any(shared.iterdir()), "the staged outputs are removed from the shared folder"


def test_outputs_sent_to_the_driver_without_a_staging_folder_are_prepared_alike(spark, tmp_path, monkeypatch):
    """A cluster without a shared folder: each task's outputs travel inline to the driver."""
    staged = []
    monkeypatch.setattr(spark_prepare, "staging_folder", lambda *_: contextlib.nullcontext(staged.append(1)))
    duck, spark_out = _prepare_both(Tables.of(_cdnow_slice(tmp_path, 100)), CDNOW_CONFIG, tmp_path)
    assert staged == [1], "the Spark run asked for its staging folder, and was given none"
    _assert_same_preparation(duck, spark_out)


def _shop(tmp: Path) -> tuple[Path, Path, Path]:
    """A synthetic shop as CSV files with every optional column, and rows planted to break each rule."""
    tx = generate_transactions(2400, seed=3, days=420, n_products=40, n_categories=5).to_pandas()
    tx["cost"] = (tx["amount"].abs() * 0.6).round(2)
    tx["is_refund"] = np.where(tx["amount"] < 0, "yes", "no")
    tx["currency"] = "EUR"
    tx["promo"] = np.where(np.arange(len(tx)) % 3 == 0, "spring", "none")  # an extra category
    tx["discount"] = (np.arange(len(tx)) % 7) * 0.5  # an extra number
    tx["ts"] = tx["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    tx = tx.astype(str)
    good = tx.iloc[0].to_dict()
    bad = [
        {**good, "customer_id": ""},
        {**good, "customer_id": "N/A"},
        {**good, "amount": "abc"},
        {**good, "ts": ""},
        {**good, "ts": "not a date"},
        {**good, "amount": "5e12"},
        {**good, "ts": "1960-05-01 10:00:00"},
        {**good, "ts": "1975-05-01 10:00:00"},
        {**good, "currency": "XXX"},
        {**good, "quantity": "two"},
        {**good, "is_refund": "maybe"},
        {**good, "amount": "inf"},
        tx.iloc[5].to_dict(),  # an exact duplicate of an earlier row (it has an order id: quarantined)
    ]
    tx = pd.concat([tx, pd.DataFrame(bad)], ignore_index=True)
    ids = sorted(set(tx["customer_id"]) - {"", "N/A"})
    rng = np.random.default_rng(5)
    customers = pd.DataFrame({
        "customer_id": ids,
        "signup_date": [str(dt.date(2021, 6, 1) + dt.timedelta(days=int(d))) for d in rng.integers(0, 400, len(ids))],
        "segment": rng.choice(["gold", "silver", "bronze"], len(ids)),
        "age": rng.integers(18, 80, len(ids)).astype(str),
    })  # fmt: skip
    again = customers.iloc[[3]].assign(segment="platinum")  # the same customer id, another profile
    customers = pd.concat([customers, again, pd.DataFrame([{"customer_id": "null"}])], ignore_index=True)
    n_events = 1500
    events = pd.DataFrame({
        "customer_id": rng.choice([*ids[:200], "ghost-1"], n_events),
        "ts": [str(dt.datetime(2022, 1, 1) + dt.timedelta(minutes=int(m))) for m in rng.integers(0, 600_000, n_events)],
        "event": rng.choice(["view", "cart", "search", "wishlist"], n_events),
        "device": rng.choice(["ios", "android", "desktop"], n_events),
    })  # fmt: skip
    events.loc[7, "ts"] = "yesterday"
    paths = tmp / "transactions.csv", tmp / "customers.csv", tmp / "events.csv"
    for frame, path in zip((tx, customers, events), paths, strict=True):
        frame.to_csv(path, index=False)
    _plant_bad_lines(paths[0], {10: "", 20: "c1,2022-03-01", 30: ",".join(["x"] * (tx.shape[1] + 2)), 31: "",
                                40: "," * (tx.shape[1] - 1)})  # fmt: skip
    _plant_bad_lines(paths[2], {3: "", 4: "ghost-2"})
    return paths


def _plant_bad_lines(path: Path, lines: dict[int, str]) -> None:
    """Insert ``lines`` (blank, too few or too many fields; all-empty fields is a row) at those line numbers."""
    rows = path.read_text().splitlines()
    for at in sorted(lines):
        rows.insert(at, lines[at])
    path.write_text("\n".join(rows) + "\n")


def test_synthetic_shop_from_csv_with_every_optional_column_is_prepared_alike(spark, tmp_path, monkeypatch):
    transactions, customers, events = _shop(tmp_path)
    read: list[str | None] = []

    def read_output(payload: bytes | None, path: str | None) -> pa.Table:
        read.append(path)
        return partitions.read_output(payload, path)

    monkeypatch.setattr(spark_prepare, "read_output", read_output)
    config = RunConfig(
        window=WindowConfig(as_of=dt.date(2023, 1, 31), horizon_days=60, max_train_windows=2),
        sequence=SequenceConfig(min_count=2, max_events=32),
    )
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
    _assert_same_preparation(duck, spark_out)
    staged = [Path(p) for p in read if p is not None]
    assert len(staged) > len(read) / 2, "a local master's tasks write their window outputs beside the output folder"
    assert all(p.parent.parent == spark_out / STAGING_DIR for p in staged)


def test_event_texts_are_refused_by_the_spark_engine_not_ignored(spark, tmp_path):
    transactions, _, events = _shop(tmp_path)
    texts = pd.read_csv(events).assign(text="the parcel came late and broken")
    texts.to_csv(events, index=False)
    config = RunConfig(engine=EngineConfig(name="spark"), window=WindowConfig(as_of=dt.date(2023, 1, 31)))
    with pytest.raises(ConfigError, match=r"text column is not read by the Spark engine.*\[text\] enabled = false"):
        prepare(Tables.of(transactions, events=events), config, tmp_path / "spark")


def test_a_table_of_the_sessions_catalog_is_prepared_like_its_file(spark, tmp_path):
    """``table:NAME`` reads a table of the SparkSession's catalog (here a view over the CDNOW slice's Parquet)."""
    path = _cdnow_slice(tmp_path, 100)
    spark.read.parquet(str(path)).createOrReplaceTempView("cdnow_orders")
    try:
        duck = prepare(Tables.of(path), CDNOW_CONFIG, tmp_path / "duckdb").out_dir
        spark_config = dataclasses.replace(CDNOW_CONFIG, engine=SPARK)
        spark_out = prepare(spark_tables("table:cdnow_orders"), spark_config, tmp_path / "spark").out_dir
    finally:
        spark.catalog.dropTempView("cdnow_orders")
    account = json.loads((spark_out / "prepare.json").read_text())["tables"]["transactions"]
    assert account["rows_in"] == pq.read_metadata(path).num_rows
    _assert_same_preparation(duck, spark_out)


@pytest.mark.parametrize(("name", "message"), [("table:", "names no table"), ("table:no_such_table", "cannot read")])
def test_a_missing_catalog_table_is_refused_with_its_name(spark, tmp_path, name, message):
    config = dataclasses.replace(CDNOW_CONFIG, engine=SPARK)
    with pytest.raises(DataReadError, match=message):
        prepare(spark_tables(name), config, tmp_path / "spark")
