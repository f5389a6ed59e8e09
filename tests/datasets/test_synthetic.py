"""The synthetic log is deterministic, well-typed and behaves like a BTYD customer base."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from custseq.datasets.synthetic import Behaviour, generate_transactions, write_transactions
from custseq.errors import ConfigError

N_ROWS = 30_000
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("ts", pa.timestamp("us")),
        ("amount", pa.float64()),
        ("product", pa.string()),
        ("category", pa.string()),
        ("channel", pa.string()),
        ("quantity", pa.int64()),
        ("order_id", pa.string()),
    ]
)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_transactions(N_ROWS, seed=7)


@pytest.fixture(scope="module")
def df(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def inactive_share(df: pd.DataFrame, end: pd.Timestamp, days: int = 90) -> float:
    last = df.groupby("customer_id")["ts"].max()
    return float((last < end - pd.Timedelta(days=days)).mean())


def test_same_seed_gives_the_same_table(table: pa.Table) -> None:
    assert generate_transactions(N_ROWS, seed=7).equals(table)


def test_different_seeds_give_different_tables(table: pa.Table) -> None:
    other = generate_transactions(N_ROWS, seed=8)
    assert not other.equals(table)
    assert other["amount"].to_numpy()[:100].tolist() != table["amount"].to_numpy()[:100].tolist()


@pytest.mark.parametrize("n_rows", [1, 17, 5_003])
def test_row_count_is_exactly_the_requested_one(n_rows: int) -> None:
    assert generate_transactions(n_rows, seed=1).num_rows == n_rows


def test_schema(table: pa.Table) -> None:
    assert table.schema == SCHEMA
    assert table.num_rows == N_ROWS
    assert table.column("customer_id")[0].as_py().startswith("C")
    assert table.column("order_id")[0].as_py().startswith("O")


def test_timestamps_lie_in_the_period_have_a_time_of_day_and_are_sorted() -> None:
    df = generate_transactions(20_000, seed=3, start="2023-03-01", days=200).to_pandas()
    assert df["ts"].min() >= pd.Timestamp("2023-03-01")
    assert df["ts"].max() < pd.Timestamp("2023-03-01") + pd.Timedelta(days=200)
    assert df["ts"].is_monotonic_increasing
    assert df["ts"].dt.hour.nunique() == 24
    # Activity peaks in the day, not at night.
    hours = df["ts"].dt.hour.value_counts().sort_index()
    assert hours.loc[12:20].min() > 3 * hours.loc[1:4].max()


def test_each_product_belongs_to_one_category(df: pd.DataFrame) -> None:
    categories_per_product = df.groupby("product")["category"].nunique()
    assert (categories_per_product == 1).all()
    assert 20 <= df["category"].nunique() <= 40
    assert df["product"].nunique() > 500


def test_options_shape_the_catalogue() -> None:
    df = generate_transactions(5_000, seed=2, n_products=30, n_categories=3, channels=("a", "b")).to_pandas()
    assert df["product"].nunique() <= 30
    assert df["category"].nunique() == 3
    assert set(df["channel"]) == {"a", "b"}


def test_product_popularity_is_skewed(df: pd.DataFrame) -> None:
    counts = df["product"].value_counts()
    top_one_percent = counts.iloc[: max(1, len(counts) // 100)].sum()
    assert top_one_percent / counts.sum() > 0.25


def test_customers_churn(df: pd.DataFrame) -> None:
    share = inactive_share(df, df["ts"].max())
    assert 0.2 < share < 0.9


def test_higher_dropout_means_more_silent_customers(df: pd.DataFrame) -> None:
    flighty = generate_transactions(N_ROWS, seed=7, behaviour=Behaviour(dropout_a=3.0, dropout_b=3.0))
    flighty_df = flighty.to_pandas()
    assert inactive_share(flighty_df, flighty_df["ts"].max()) > inactive_share(df, df["ts"].max()) + 0.1


def test_purchase_frequency_is_heterogeneous(df: pd.DataFrame) -> None:
    orders = df[df["amount"] > 0].groupby("customer_id")["order_id"].nunique()
    assert (orders == 1).mean() > 0.25  # many one-off buyers
    assert orders.max() >= 20  # and some loyal ones


def test_refunds_are_a_minority_and_reverse_an_earlier_line(df: pd.DataFrame) -> None:
    refunds = df[df["amount"] < 0]
    assert 0.01 < len(refunds) / len(df) < 0.03
    assert (refunds["quantity"] < 0).all()
    assert (df.loc[df["amount"] > 0, "quantity"] > 0).all()
    sales = df[df["amount"] > 0]
    matched = refunds.merge(sales, on=["order_id", "product", "customer_id"], suffixes=("", "_sale"))
    matched = matched[(matched["amount_sale"] == -matched["amount"]) & (matched["ts_sale"] < matched["ts"])]
    assert matched.drop_duplicates(["order_id", "product", "ts", "amount"]).shape[0] == len(refunds)


def test_no_duplicate_rows_and_one_line_per_product_in_an_order(df: pd.DataFrame) -> None:
    assert not df.duplicated().any()
    assert not df[df["amount"] > 0].duplicated(["order_id", "product"]).any()


def test_orders_have_one_customer_one_time_and_several_lines(df: pd.DataFrame) -> None:
    sales = df[df["amount"] > 0]
    per_order = sales.groupby("order_id").agg(
        customers=("customer_id", "nunique"), times=("ts", "nunique"), lines=("product", "size")
    )
    assert (per_order["customers"] == 1).all()
    assert (per_order["times"] == 1).all()
    assert per_order["lines"].max() >= 4
    assert 1.3 < per_order["lines"].mean() < 2.2


def test_mean_order_value_matches_gamma_gamma(df: pd.DataFrame) -> None:
    b = Behaviour()
    expected = b.spend_p * b.spend_gamma / (b.spend_q - 1)  # E[p / ν] with ν ~ Gamma(q, γ)
    order_value = df[df["amount"] > 0].groupby("order_id")["amount"].sum()
    assert order_value.mean() == pytest.approx(expected, rel=0.15)


def test_customers_keep_a_channel_preference(df: pd.DataFrame) -> None:
    orders = df[df["amount"] > 0].drop_duplicates("order_id")[["customer_id", "channel"]]
    orders = orders[orders.groupby("customer_id")["channel"].transform("size") >= 5]
    shuffled = orders.assign(channel=np.random.default_rng(0).permutation(orders["channel"].to_numpy()))

    def top_channel_share(frame: pd.DataFrame) -> float:
        counts = frame.groupby(["customer_id", "channel"]).size().groupby(level="customer_id")
        return float((counts.max() / counts.sum()).mean())

    assert top_channel_share(orders) > top_channel_share(shuffled) + 0.05


def test_customer_ids_follow_first_purchase(df: pd.DataFrame) -> None:
    first = df.groupby("customer_id")["ts"].min().sort_index()
    assert first.is_monotonic_increasing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": 0}, r"n_rows must be a positive integer, got 0"),
        ({"n_rows": 10, "days": -1}, r"days must be a positive integer, got -1"),
        ({"n_rows": 10, "n_products": 3, "n_categories": 5}, r"n_categories \(5\) cannot exceed n_products \(3\)"),
        ({"n_rows": 10, "channels": "web"}, r"channels must be a non-empty sequence"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_transactions(**kwargs)


def test_write_parquet_round_trips(tmp_path, table: pa.Table) -> None:
    path = write_transactions(tmp_path / "sub" / "tx.parquet", N_ROWS, seed=7)
    assert path == tmp_path / "sub" / "tx.parquet"
    assert pq.read_table(path).equals(table)


def test_write_csv_keeps_rows_and_values(tmp_path) -> None:
    path = write_transactions(tmp_path / "tx.csv", 500, seed=4, fmt="csv", days=30)
    back = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=SCHEMA))
    assert back.equals(generate_transactions(500, seed=4, days=30))
    assert back["ts"][0].as_py().date() >= dt.date(2022, 1, 1)


def test_write_rejects_unknown_format(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"fmt must be 'parquet' or 'csv', got 'json'"):
        write_transactions(tmp_path / "tx.json", 10, fmt="json")
