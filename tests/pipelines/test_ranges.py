"""The DuckDB engine prepares large data a range of customers at a time, into the files of one pass.

Parity: the synthetic shop with every optional column (and rows planted to break each rule), a CDNOW slice (dates
without a time of day) and a shop with event texts, prepared whole and in several ranges, give the same folder
(tests/prepared_alike.py: features to relative 1e-9, everything else exactly).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json

import duckdb
import pyarrow as pa
import pytest
from tests.prepared_alike import CDNOW_CONFIG, SHOP_CONFIG, assert_same_preparation, cdnow_slice, shop_files
from tests.text.small_shop import CONFIG as TEXT_CONFIG
from tests.text.small_shop import no_network

from custseq.config import EngineConfig, RunConfig
from custseq.datasets.shop import generate_shop
from custseq.errors import ConfigError
from custseq.io.engine import connect
from custseq.io.tables import Tables
from custseq.pipelines import ranges
from custseq.pipelines.prepare import prepare
from custseq.validate.quarantine import CleanTable


def _prepare_whole_and_by_ranges(tables: Tables, config: RunConfig, tmp, range_rows: int):
    """Both folders, and the stages the ranged run said it ran."""
    whole = prepare(tables, config, tmp / "whole").out_dir
    said: list[str] = []
    engine = dataclasses.replace(config.engine, range_rows=range_rows)
    ranged = prepare(tables, dataclasses.replace(config, engine=engine), tmp / "ranged", progress=said.append)
    return whole, ranged.out_dir, [str(s) for s in said]


def _ranges_said(said: list[str]) -> int:
    (line,) = [s for s in said if "ranges of customers" in s]
    return int(line.split("(")[1].split()[0])


def test_the_shop_with_every_optional_column_prepared_by_ranges_is_prepared_as_in_one_pass(tmp_path):
    transactions, customers, events = shop_files(tmp_path)
    tables = Tables.of(transactions, customers=customers, events=events)
    whole, ranged, said = _prepare_whole_and_by_ranges(tables, SHOP_CONFIG, tmp_path, range_rows=1000)
    assert _ranges_said(said) >= 4, said
    assert not any("ordering every customer's events once" in s for s in said), "no pass over every customer"
    assert_same_preparation(whole, ranged)
    first = json.loads((whole / "prepare.json").read_text())
    assert any(w["customers"] for w in first["windows"]) and (whole / "windows").is_dir()
    assert any((whole / "windows").rglob("prospects.parquet")), "the shop's events give prospects in every range"


def test_a_cdnow_slice_prepared_by_ranges_is_prepared_as_in_one_pass(tmp_path):
    whole, ranged, said = _prepare_whole_and_by_ranges(
        Tables.of(cdnow_slice(tmp_path, 25)), CDNOW_CONFIG, tmp_path, 700
    )
    assert _ranges_said(said) >= 3, said
    assert_same_preparation(whole, ranged)


def test_event_texts_prepared_by_ranges_are_prepared_as_in_one_pass(tmp_path):
    shop = generate_shop(300, days=500, seed=5)  # the text tests' small shop (tests/text)
    tables = Tables.of(shop.transactions.to_pandas(), events=shop.events.to_pandas())
    config = dataclasses.replace(
        TEXT_CONFIG, window=dataclasses.replace(TEXT_CONFIG.window, as_of=dt.date(2024, 3, 31))
    )
    with no_network():
        whole, ranged, said = _prepare_whole_and_by_ranges(tables, config, tmp_path, range_rows=1500)
    assert _ranges_said(said) >= 3, said
    assert json.loads((whole / "vocab.json").read_text()).get("text"), "the texts were read"
    assert_same_preparation(whole, ranged)


def _ids_table(con: duckdb.DuckDBPyConnection, ids: list[str]) -> CleanTable:
    con.execute("CREATE TEMP TABLE ids AS SELECT unnest($ids) AS customer_id", {"ids": ids})
    return CleanTable("transactions", "ids", {}, len(ids), len(ids), 0, {})


def test_the_ranges_hold_every_id_once_also_ids_outside_the_transactions():
    con = connect()
    ids = [f"c{i:03d}" for i in range(100)] + ["c050"] * 40  # one id with many rows lands on a bound
    found = ranges.customer_ranges(con, _ids_table(con, ids), 4)
    assert len(found) == 4 and found[0].low is None and found[-1].high is None
    assert all(a.high == b.low for a, b in itertools.pairwise(found))
    others = ["", "a", "c050", "c0505", "zzz", *ids]  # e.g. events of people who never bought, either side
    for customer in others:
        inside = [r for r in found if (r.low is None or customer >= r.low) and (r.high is None or customer < r.high)]
        assert len(inside) == 1, customer
        where, params = inside[0].where()
        assert con.execute(f"SELECT {where.replace('customer_id', '$id')}", {**params, "id": customer}).fetchall() == [
            (True,)
        ]
    assert ranges.customer_ranges(con, _ids_table(connect(), ids), 1) == [ranges.CustomerRange(None, None)]


@pytest.mark.parametrize(
    ("rows", "range_rows", "limit", "expected"),
    [
        (6_900_000, None, int(11.7 * 2**30), 1),  # a million customers of the synthetic shop: every one at once
        (34_700_000, None, int(11.7 * 2**30), 5),  # five million: five ranges
        (6_900_000, None, 4 * 2**30, 3),  # a million on a machine that gives DuckDB 4 GiB
        (10, 3, 4 * 2**30, 4),  # the setting wins
        (0, None, 4 * 2**30, 1),
    ],
)
def test_how_many_ranges_follows_the_memory_limit_unless_range_rows_is_set(rows, range_rows, limit, expected):
    assert ranges.range_count(rows, EngineConfig(range_rows=range_rows), limit) == expected


def test_range_rows_below_one_is_refused():
    with pytest.raises(ConfigError, match="range_rows"):
        EngineConfig(range_rows=0)


def test_sequences_are_cut_into_their_shards_in_order_whatever_order_the_shards_come_in():
    table = pa.table({"customer_id": ["a", "b", "c", "d", "e", "f"], "shard": pa.array([0, 0, 2, 2, 2, 5], pa.int32())})
    runs = [(shard, rows.column("customer_id").to_pylist()) for shard, rows in ranges._shard_runs(table)]
    assert runs == [(0, ["a", "b"]), (2, ["c", "d", "e"]), (5, ["f"])]
    mixed = pa.table({"customer_id": ["a", "b", "c", "d"], "shard": pa.array([1, 0, 1, 1], pa.int32())})
    runs = [(shard, rows.column("customer_id").to_pylist()) for shard, rows in ranges._shard_runs(mixed)]
    assert runs == [(1, ["a"]), (0, ["b"]), (1, ["c", "d"])]
    assert all("shard" not in rows.column_names for _, rows in ranges._shard_runs(table))
    assert list(ranges._shard_runs(table.slice(0, 0))) == []
