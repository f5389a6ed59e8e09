"""Sequences of a window: last L tokens oldest first, time features, standardisation, shards."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseq.config import SequenceConfig
from custseq.io.engine import connect
from custseq.sequences.build import _in_customer_order, read_sequences, write_sequences
from custseq.sequences.tokens import layout_for
from custseq.sequences.vocab import fit_vocab
from custseq.validate.tables import validate_tables
from custseq.windows import Window

BEFORE = dt.datetime(2024, 2, 1)  # vocabulary and statistics: rows before this only
WINDOW = Window(dt.datetime(2024, 3, 1), 30)


def daily_rows(cid: str, n: int, start: str = "2024-01-01") -> list[tuple]:
    """n transactions on consecutive days, the k-th at hour k (so ``hour`` identifies the token)."""
    t0 = pd.Timestamp(start)
    return [(cid, t0 + pd.Timedelta(days=k, hours=k), float(10 * (k + 1)), 1.0 + (k % 3)) for k in range(n)]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    rows = daily_rows("one", 1) + daily_rows("three", 3) + daily_rows("seven", 7) + daily_rows("late", 2, "2024-02-20")
    rows.append(("future", pd.Timestamp("2024-03-05 10:00"), 5.0, 1.0))  # first purchase after the cutoff
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "quantity"])


def build(df: pd.DataFrame, folder: Path, cfg: SequenceConfig, window: Window = WINDOW, token: str = "line"):
    con = connect()
    tx = validate_tables(con, df).tables["transactions"]
    vocab = fit_vocab(con, layout_for(tx, None, token), tx, None, BEFORE, cfg)
    n = len({c for c, ts in zip(df["customer_id"], df["ts"], strict=True) if ts < window.cutoff})
    return read_sequences(write_sequences(con, vocab, window, cfg, folder, n)), vocab


def by_customer(table) -> dict[str, dict]:
    return {r["customer_id"]: r for r in table.to_pylist()}


def test_last_l_tokens_oldest_first(history, tmp_path):
    seqs, _ = build(history, tmp_path, SequenceConfig(max_events=4))
    rows = by_customer(seqs)
    assert sorted(rows) == ["late", "one", "seven", "three"]  # "future" has no token before the cutoff
    assert {c: r["length"] for c, r in rows.items()} == {"one": 1, "three": 3, "seven": 4, "late": 2}
    assert rows["seven"]["hour"] == [3, 4, 5, 6]  # the last four of hours 0…6, oldest first
    assert rows["three"]["hour"] == [0, 1, 2]
    assert all(len(r["amount"]) == len(r["token_type"]) == r["length"] for r in rows.values())
    assert all(c == WINDOW.cutoff for c in seqs.column("cutoff").to_pylist())


def test_log_dt_prev_uses_the_true_previous_token(history, tmp_path):
    gap = math.log1p(25 / 24)  # one day and one hour between consecutive tokens
    cut, _ = build(history, tmp_path / "cut", SequenceConfig(max_events=4))
    full, _ = build(history, tmp_path / "full", SequenceConfig(max_events=64))
    # The first kept token's predecessor was cut off by L: its gap still counts.
    assert by_customer(cut)["seven"]["log_dt_prev"] == pytest.approx([gap] * 4, rel=1e-6)
    assert by_customer(full)["seven"]["log_dt_prev"] == pytest.approx([0.0] + [gap] * 6, rel=1e-6)
    assert by_customer(full)["one"]["log_dt_prev"] == [0.0]


def test_time_features(history, tmp_path):
    seqs, _ = build(history, tmp_path, SequenceConfig(max_events=64))
    late = by_customer(seqs)["late"]  # 2024-02-20 00:00 (Tuesday) and 2024-02-21 01:00 (Wednesday)
    days = [
        (WINDOW.cutoff - dt.datetime(2024, 2, 20)).days,
        (WINDOW.cutoff - dt.datetime(2024, 2, 21, 1)) / dt.timedelta(days=1),
    ]
    assert late["log_t_to_cutoff"] == pytest.approx([math.log1p(d) for d in days], rel=1e-6)
    assert late["dow"] == [1, 2]
    assert late["month"] == [1, 1]
    assert late["hour"] == [0, 1]
    assert late["token_type"] == [0, 0]


def test_numeric_fields_standardised_with_training_statistics(history, tmp_path):
    seqs, vocab = build(history, tmp_path, SequenceConfig(max_events=64))
    train = history[history["ts"] < BEFORE]

    def slog(x):
        return np.sign(x) * np.log1p(np.abs(x))

    for name in ("amount", "quantity"):
        s = slog(train[name].to_numpy())
        mean, std = s.mean(), s.std()  # population standard deviation of the training tokens
        assert vocab.stats[name] == pytest.approx((mean, std), rel=1e-12)
        # Every window, including tokens after BEFORE (customer "late"), uses those statistics.
        for cid, row in by_customer(seqs).items():
            raw = history[(history["customer_id"] == cid) & (history["ts"] < WINDOW.cutoff)].sort_values("ts")[name]
            assert row[name] == pytest.approx(list((slog(raw.to_numpy()) - mean) / std), rel=1e-5, abs=1e-6), cid


def test_order_mode_statistics_are_over_orders(tmp_path):
    df = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-03 10:00", "2024-01-03 10:00", "2024-01-04 10:00", "2024-01-05 10:00"]),
            "order_id": ["o1", "o1", "o2", "o3"],
            "amount": [10.0, 20.0, 5.0, -7.0],
        }
    )
    seqs, vocab = build(df, tmp_path, SequenceConfig(), token="order")
    s = np.array([math.log1p(30.0), math.log1p(5.0), -math.log1p(7.0)])  # order totals 30, 5, −7
    assert vocab.stats["amount"] == pytest.approx((s.mean(), s.std()), rel=1e-12)
    n_lines = np.log1p([2.0, 1.0, 1.0])
    assert vocab.stats["n_lines"] == pytest.approx((n_lines.mean(), n_lines.std()), rel=1e-12)
    rows = by_customer(seqs)
    assert rows["a"]["amount"] == pytest.approx(list((s[:2] - s.mean()) / s.std()), rel=1e-5)
    assert rows["b"]["amount"] == pytest.approx([(s[2] - s.mean()) / s.std()], rel=1e-5)


def test_constant_field_has_unit_std(tmp_path):
    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "ts": pd.to_datetime(["2024-01-03 10:00", "2024-01-04 10:00", "2024-02-10 10:00"]),
            "amount": [10.0, 20.0, 30.0],
            "quantity": [2.0, 2.0, 5.0],
        }
    )
    seqs, vocab = build(df, tmp_path, SequenceConfig())
    assert vocab.stats["quantity"] == pytest.approx((math.log1p(2.0), 1.0))
    assert by_customer(seqs)["a"]["quantity"] == pytest.approx([0.0, math.log1p(5.0) - math.log1p(2.0)], rel=1e-6)


def test_shards_hold_every_customer_exactly_once(tmp_path):
    rows = [
        (f"cust{i:03d}", pd.Timestamp("2024-01-01") + pd.Timedelta(hours=7 * i + k), 5.0 + k, 1.0)
        for i in range(60)
        for k in range(2)
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "quantity"])
    seqs, _ = build(df, tmp_path, SequenceConfig(shard_customers=10))
    shards = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert 2 <= len(shards) <= 6  # ceil(60 / 10) = 6 hash buckets, some may be empty
    assert all(p.name.startswith("shard=") and 0 <= int(p.name.split("=")[1]) < 6 for p in shards)
    ids = [
        cid for p in shards for f in sorted(p.glob("*.parquet")) for cid in pq.read_table(f)["customer_id"].to_pylist()
    ]
    assert len(ids) == len(set(ids)) == 60
    assert sorted(ids) == seqs.column("customer_id").to_pylist() == sorted(df["customer_id"].unique())


def test_one_shard_when_customers_fit(history, tmp_path):
    build(history, tmp_path, SequenceConfig(shard_customers=100))
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["shard=0"]


def test_a_shard_written_out_of_order_is_rewritten_in_customer_order(tmp_path):
    # DuckDB's partitioned write appends its threads' rows as they finish: a shard may come out of order, or in
    # several files; streaming it must give the same batches in every run
    ids = [f"c{i:04d}" for i in range(500)]
    rows = pa.table({"customer_id": ids, "length": pa.array(range(500), pa.int32())})
    shard = tmp_path / "shard=0"
    shard.mkdir()
    shuffled = rows.take(np.random.default_rng(0).permutation(500))
    pq.write_table(shuffled.slice(0, 300), shard / "data_0.parquet")
    pq.write_table(shuffled.slice(300), shard / "data_1.parquet")
    _in_customer_order(connect(), shard)
    assert [f.name for f in shard.iterdir()] == ["data_0.parquet"]
    assert pq.read_table(shard / "data_0.parquet").equals(rows)
    before = (shard / "data_0.parquet").stat().st_mtime_ns
    _in_customer_order(connect(), shard)  # already in order: left as it is
    assert (shard / "data_0.parquet").stat().st_mtime_ns == before
