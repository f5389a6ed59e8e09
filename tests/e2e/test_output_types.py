"""What the outputs give back: the user's integer customer ids as integers, in numeric order; list columns as
lists in Parquet and JSON text in CSV."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows

import custseq
from custseq.config import load_config
from custseq.validate.tables import validate_tables


@pytest.fixture(scope="module")
def integer_shop() -> pd.DataFrame:
    """The small shop with ids 1 … 200 and a guest row without one: pandas makes the column float (1.0, NaN)."""
    rows = _shop_rows()
    rows["customer_id"] = rows["customer_id"].str[1:].astype(int) + 1
    guest = pd.DataFrame({"customer_id": [np.nan], "ts": [dt.date(2023, 5, 1)], "amount": [9.5], "product": ["p1"]})
    return pd.concat([rows, guest], ignore_index=True)


@pytest.fixture(scope="module")
def predicted(integer_shop, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("integer-ids")
    (folder / "tiny.toml").write_text(TINY_TOML)
    config = load_config(folder / "tiny.toml")
    assert integer_shop["customer_id"].dtype == np.float64
    custseq.predict(integer_shop, horizon="60d", as_of=AS_OF, config=config, out=folder / "out")
    return folder / "out"


def test_integer_ids_come_back_as_integers_in_numeric_order(predicted, integer_shop):
    expected = sorted(int(c) for c in integer_shop.loc[integer_shop["ts"] <= dt.date(2023, 10, 15), "customer_id"]
                      .dropna().unique())  # fmt: skip
    p = pq.read_table(predicted / "predictions.parquet")
    assert p.schema.field("customer_id").type == pa.int64()
    assert p.column("customer_id").to_pylist() == expected  # 1, 2, …, 10, not "1", "10", "100"
    e = pq.read_table(predicted / "embeddings.parquet")
    assert e.column("customer_id").to_pylist() == expected
    csv = pd.read_csv(predicted / "predictions.csv")
    assert csv["customer_id"].dtype == np.int64 and csv["customer_id"].tolist() == expected
    contacts = pd.read_csv(predicted / "contacts.csv")
    assert len(contacts) and contacts["customer_id"].dtype == np.int64
    assert set(contacts["customer_id"]) <= set(expected)
    metrics = json.loads((predicted / "metrics.json").read_text())
    assert metrics["tables"]["transactions"]["customer_id_type"] == "integer"


def test_score_gives_integer_ids_back_too(predicted, integer_shop, tmp_path):
    scored = custseq.score(predicted / "model", integer_shop, as_of=AS_OF).predictions
    assert scored["customer_id"].dtype == np.int64 and scored["customer_id"].is_monotonic_increasing


@pytest.mark.parametrize(
    ("ids", "kind"),
    [
        (["00017", "00002"], "text"),  # leading zeros: an id, not a number
        (["17", "2"], "integer"),  # a CSV's whole numbers
        (["17.0", "2.0"], "integer"),  # written as floats: read as 17 and 2
        (["17", "2.0"], "text"),  # mixed: custseq keeps "2.0" as it is
        (["17", "A2"], "text"),
        ([17.5, 2.0], "text"),  # not whole
        ([17.0, 2.0], "integer"),
    ],
)
def test_which_ids_count_as_integers(ids, kind):
    frame = pd.DataFrame({"customer_id": ids, "ts": ["2023-01-01", "2023-01-02"], "amount": [1.0, 2.0]})
    with duckdb.connect() as con:
        assert validate_tables(con, frame).accounts()["transactions"].customer_id_type == kind


def test_list_columns_are_lists_in_parquet_and_json_in_csv(predicted):
    schema = pq.read_schema(predicted / "predictions.parquet")
    for column in ("next_items", "next_actions"):
        assert pa.types.is_list(schema.field(column).type), schema.field(column)
    parquet = pd.read_parquet(predicted / "predictions.parquet")
    csv = pd.read_csv(predicted / "predictions.csv")
    assert csv["next_actions"].map(json.loads).tolist() == [[dict(a) for a in plan] for plan in parquet["next_actions"]]
    assert all(isinstance(text, str) for text in csv["next_items"])
