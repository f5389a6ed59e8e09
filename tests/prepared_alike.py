"""Two prepared folders that must be alike: the assertions, and the data sets they are checked on.

Used by the Spark engine's parity tests (tests/spark/test_parity.py) and the DuckDB engine's preparation by
ranges of customers (tests/pipelines/test_ranges.py).

Tolerance: features are floats computed by the same DuckDB SQL on each range of customers, so they agree to
rounding (relative 1e-9); everything else (ids, counts, labels, sequences, quarantine rows) is equal exactly.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig, SequenceConfig, WindowConfig
from custseq.datasets import load_cdnow
from custseq.datasets.synthetic import generate_transactions
from custseq.sequences.build import read_sequences

FEATURE_RTOL = 1e-9
SHOP_CONFIG = RunConfig(
    window=WindowConfig(as_of=dt.date(2023, 1, 31), horizon_days=60, max_train_windows=2),
    sequence=SequenceConfig(min_count=2, max_events=32),
)


def assert_tables_equal(a: pa.Table, b: pa.Table, what: str, rtol: float = 0.0) -> None:
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


def assert_same_preparation(first: Path, second: Path) -> None:
    """Two prepared folders hold the same outputs: features and prospects to :data:`FEATURE_RTOL`, the rest exactly."""
    a, b = json.loads((first / "prepare.json").read_text()), json.loads((second / "prepare.json").read_text())
    for key in ("as_of", "horizon_days", "data_start", "data_end", "tables", "windows", "notes", "sequence"):
        assert a[key] == b[key], f"prepare.json {key} differs"
    assert (first / "vocab.json").read_text() == (second / "vocab.json").read_text()
    assert_tables_equal(
        pq.read_table(first / "daily_spend.parquet"), pq.read_table(second / "daily_spend.parquet"), "daily spend"
    )
    for window in a["windows"]:
        wa, wb = first / "windows" / window["as_of"], second / "windows" / window["as_of"]
        assert_tables_equal(
            pq.read_table(wa / "features.parquet"),
            pq.read_table(wb / "features.parquet"),
            f"{window['as_of']} features",
            FEATURE_RTOL,
        )
        assert (wa / "labels.parquet").exists() == (wb / "labels.parquet").exists()
        if (wa / "labels.parquet").exists():
            assert_tables_equal(
                pq.read_table(wa / "labels.parquet"), pq.read_table(wb / "labels.parquet"), f"{window['as_of']} labels"
            )
        assert (wa / "prospects.parquet").exists() == (wb / "prospects.parquet").exists()
        if (wa / "prospects.parquet").exists():
            assert_tables_equal(
                pq.read_table(wa / "prospects.parquet"),
                pq.read_table(wb / "prospects.parquet"),
                f"{window['as_of']} prospects",
                FEATURE_RTOL,
            )
        assert_tables_equal(
            read_sequences(wa / "sequences"), read_sequences(wb / "sequences"), f"{window['as_of']} sequences"
        )
        shards = sorted(p.relative_to(wa) for p in wa.rglob("sequences/**/*.parquet"))
        assert shards == sorted(p.relative_to(wb) for p in wb.rglob("sequences/**/*.parquet"))
    quarantined = sorted(p.name for p in (first / "quarantine").glob("*.parquet"))
    assert quarantined == sorted(p.name for p in (second / "quarantine").glob("*.parquet"))
    for name in quarantined:
        assert_tables_equal(
            pq.read_table(first / "quarantine" / name),
            pq.read_table(second / "quarantine" / name),
            f"quarantine {name}",
        )


def cdnow_slice(tmp: Path, every: int) -> Path:
    """Every ``every``-th CDNOW customer, written to Parquet."""
    rows = load_cdnow()
    rows = rows[rows["customer_id"].astype(int) % every == 0]
    path = tmp / "cdnow.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), path)
    return path


CDNOW_CONFIG = RunConfig(window=WindowConfig(as_of=dt.date(1998, 6, 30), max_train_windows=2))


def shop_files(tmp: Path) -> tuple[Path, Path, Path]:
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
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": [
                str(dt.date(2021, 6, 1) + dt.timedelta(days=int(d))) for d in rng.integers(0, 400, len(ids))
            ],
            "segment": rng.choice(["gold", "silver", "bronze"], len(ids)),
            "age": rng.integers(18, 80, len(ids)).astype(str),
        }
    )
    again = customers.iloc[[3]].assign(segment="platinum")  # the same customer id, another profile
    customers = pd.concat([customers, again, pd.DataFrame([{"customer_id": "null"}])], ignore_index=True)
    n_events = 1500
    events = pd.DataFrame(
        {
            "customer_id": rng.choice([*ids[:200], "ghost-1"], n_events),
            "ts": [
                str(dt.datetime(2022, 1, 1) + dt.timedelta(minutes=int(m))) for m in rng.integers(0, 600_000, n_events)
            ],
            "event": rng.choice(["view", "cart", "search", "wishlist"], n_events),
            "device": rng.choice(["ios", "android", "desktop"], n_events),
        }
    )
    events.loc[7, "ts"] = "yesterday"
    paths = tmp / "transactions.csv", tmp / "customers.csv", tmp / "events.csv"
    for frame, path in zip((tx, customers, events), paths, strict=True):
        frame.to_csv(path, index=False)
    plant_bad_lines(
        paths[0],
        {10: "", 20: "c1,2022-03-01", 30: ",".join(["x"] * (tx.shape[1] + 2)), 31: "", 40: "," * (tx.shape[1] - 1)},
    )
    plant_bad_lines(paths[2], {3: "", 4: "ghost-2"})
    return paths


def plant_bad_lines(path: Path, lines: dict[int, str]) -> None:
    """Insert ``lines`` (blank, too few or too many fields; all-empty fields is a row) at those line numbers."""
    rows = path.read_text().splitlines()
    for at in sorted(lines):
        rows.insert(at, lines[at])
    path.write_text("\n".join(rows) + "\n")
