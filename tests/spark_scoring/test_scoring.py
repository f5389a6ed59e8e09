"""Spark batch scoring: a saved model scores a Spark DataFrame of CDNOW transactions as `custseq score` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tests.service.conftest import TINY_TOML
from typer.testing import CliRunner

from custseq.cli import app
from custseq.datasets import load_cdnow
from custseq.errors import ConfigError
from custseq.io.tables import Tables
from custseq.models.finetune import load_churn_value
from custseq.pipelines.predict import saved_data_config
from custseq.pipelines.score import score_with_model

AS_OF = "1998-06-30"
CUSTOMERS = 800
PER_BATCH = 300  # three batches of about 270 customers: the population columns must be ranked across them
# Each customer's own columns come out of the network in float32; how many customers share a forward pass changes
# their last bits (clv_expected moves by < 1e-6 on values of a few dollars), nothing else.
RTOL, ATOL = 1e-5, 1e-6
POPULATION_COLUMNS = ("segment", "value_score", "next_actions")
runner = CliRunner()


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory) -> Path:
    """The first CDNOW customers with the data contract's names (ts, amount, quantity)."""
    rows = load_cdnow().rename(columns={"date": "ts", "dollar_value": "amount", "number_of_cds": "quantity"})
    keep = rows["customer_id"].drop_duplicates().iloc[:CUSTOMERS]
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    rows[rows["customer_id"].isin(keep)].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def rows(cdnow_csv) -> pd.DataFrame:
    return pd.read_csv(cdnow_csv, dtype={"customer_id": str}, parse_dates=["ts"])


@pytest.fixture(scope="module")
def model_dir(cdnow_csv, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "tiny.toml").write_text(TINY_TOML + "\n[report]\nenabled = false\n")
    args = ["predict", str(cdnow_csv), "--horizon", "90d", "--as-of", AS_OF, "--config", str(folder / "tiny.toml"),
            "--out", str(folder / "run")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder / "run" / "model"


@pytest.fixture(scope="module")
def cli_predictions(cdnow_csv, model_dir, tmp_path_factory) -> pd.DataFrame:
    """What `custseq score` writes for the same rows (predictions.parquet: full precision)."""
    out = tmp_path_factory.mktemp("scored") / "scores"
    args = ["score", str(cdnow_csv), "--model", str(model_dir), "--as-of", AS_OF, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return pq.read_table(out / "predictions.parquet").to_pandas()


def _as_records(value) -> list[dict]:
    """A plan or next-items cell as Python records: JSON text (Spark, the API) or a parquet list of structs."""
    return json.loads(value) if isinstance(value, str) else [dict(v) for v in value]


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(customer_id=frame["customer_id"].astype(str)).sort_values("customer_id", ignore_index=True)


def _assert_same_predictions(got: pd.DataFrame, expected: pd.DataFrame, columns) -> None:
    for column in columns:
        a, b = got[column], expected[column]
        if column in ("next_items", "next_actions"):
            assert [_as_records(v) for v in a] == [_as_records(v) for v in b], column
        elif pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=RTOL, atol=ATOL, err_msg=column)
        else:
            assert a.tolist() == b.tolist(), column


@pytest.mark.slow
def test_spark_scores_equal_custseq_score(spark_session, rows, model_dir, cli_predictions):
    from custseq.spark.scoring import PREDICTIONS, score_spark

    transactions = spark_session.createDataFrame(rows)
    scored = score_spark(transactions, model_dir, as_of=AS_OF, customers_per_batch=PER_BATCH)
    assert tuple(scored.columns) == PREDICTIONS == tuple(cli_predictions.columns)
    got, expected = _by_customer(scored.toPandas()), _by_customer(cli_predictions)
    assert len(got) == CUSTOMERS and got["customer_id"].tolist() == expected["customer_id"].tolist()
    _assert_same_predictions(got, expected, PREDICTIONS)
    assert got["segment"].nunique() > 2 and got["value_score"].std() > 5  # the population columns say something


@pytest.mark.slow
def test_only_the_population_columns_depend_on_who_is_scored_together(rows, model_dir):
    """Why Spark ranks the whole population in a second pass: a customer's own columns are the same whichever
    customers are scored with it (BG/NBD uses the model's saved population fit), its segment, value score and
    plan are not."""
    model, saved, _ = load_churn_value(model_dir)
    config = saved_data_config(saved["data"])
    whole = _by_customer(score_with_model(model, config, Tables.of(rows), as_of=AS_OF).predictions)
    ids = rows["customer_id"].drop_duplicates()
    halves = [rows[rows["customer_id"].isin(ids.iloc[k::2])] for k in range(2)]
    split = _by_customer(
        pd.concat([score_with_model(model, config, Tables.of(h), as_of=AS_OF).predictions for h in halves])
    )
    own = [c for c in whole.columns if c not in POPULATION_COLUMNS]
    _assert_same_predictions(split, whole, own)
    assert not np.allclose(split["value_score"], whole["value_score"], rtol=RTOL, atol=ATOL)


def test_transactions_without_the_customer_column_are_refused(spark_session, rows, model_dir):
    from custseq.spark.scoring import score_spark

    renamed = spark_session.createDataFrame(rows.rename(columns={"customer_id": "household"}))
    with pytest.raises(ConfigError, match=r"no customer column 'customer_id'.*canonical names"):
        score_spark(renamed, model_dir, as_of=AS_OF)


def test_a_timestamp_read_in_another_time_zone_is_refused(spark_session, rows, model_dir):
    from custseq.spark.scoring import score_spark

    # the session may carry custseq's preparation settings (TIMESTAMP_NTZ by default) when a test of tests/spark ran
    # first in this process: the time stamps must be read as zoned ones here
    settings = ("spark.sql.session.timeZone", "spark.sql.timestampType")
    before = {key: spark_session.conf.get(key) for key in settings}
    spark_session.conf.set("spark.sql.timestampType", "TIMESTAMP_LTZ")
    try:
        transactions = spark_session.createDataFrame(rows.head(50))
        spark_session.conf.set("spark.sql.session.timeZone", "Europe/Paris")
        with pytest.raises(ConfigError, match="session time zone is Europe/Paris"):
            score_spark(transactions, model_dir, as_of=AS_OF)
    finally:
        for key, value in before.items():
            spark_session.conf.set(key, value)
