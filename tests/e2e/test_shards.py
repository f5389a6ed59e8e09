"""Scoring shard by shard (custseq.pipelines.shards): each shard's window folder holds its customers' sequences,
features and labels, row for row; the e2e parity with the whole window held is in test_predict.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import custseq
from custseq.config import RunConfig
from custseq.io.prepared import PreparedWindows
from custseq.models.finetune import WindowScores
from custseq.pipelines.shards import _in_customer_order, shard_windows
from custseq.sequences.build import SHARD_FILE, read_sequences


def _rows(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = [
        {"customer_id": f"c{c:03d}", "ts": dt.date(2023, 1, 1) + dt.timedelta(days=int(d)), "amount": 10.0 + c}
        for c in range(n) for d in rng.choice(300, size=int(rng.integers(1, 6)), replace=False)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_each_shard_holds_its_customers_sequences_features_and_labels_row_for_row(tmp_path):
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, sequence=dataclasses.replace(cfg.sequence, shard_customers=30))
    custseq.prepare(_rows(), out=tmp_path / "prepared", as_of="2023-10-01", horizon="60d", config=cfg)
    window = PreparedWindows.read(tmp_path / "prepared").validation  # a labelled training window
    assert window.has_labels and len(list(window.sequences.iterdir())) >= 3
    views = shard_windows(window, tmp_path / "shards", cfg)

    assert len(views) == len(list(window.sequences.iterdir()))
    features, labels = pq.read_table(window.features), pq.read_table(window.labels)
    seen = []
    for view, shard in zip(views, sorted(window.sequences.iterdir(), key=lambda p: int(p.name[6:])), strict=True):
        ids = read_sequences(view.sequences).column("customer_id").to_pylist()
        assert ids == pq.read_table(shard / SHARD_FILE).column("customer_id").to_pylist()  # the shard's file
        own = pq.read_table(view.features)
        assert own.schema == features.schema and sorted(own.column("customer_id").to_pylist()) == sorted(ids)
        own_labels = pq.read_table(view.labels)
        assert own_labels.schema == labels.schema
        assert own_labels.column("customer_id").to_pylist() == own.column("customer_id").to_pylist()  # row for row
        whole = labels.to_pandas().set_index("customer_id").loc[own_labels.column("customer_id").to_pylist()]
        assert own_labels.to_pandas().set_index("customer_id").equals(whole)
        seen += ids
    assert sorted(seen) == sorted(read_sequences(window.sequences).column("customer_id").to_pylist())


def test_the_shards_scores_and_labels_are_put_in_customer_order():
    def shard(ids: list[str]) -> WindowScores:
        n = np.array([int(c[1:]) for c in ids], dtype=float)
        return WindowScores(ids, {"churn_probability": n / 10}, np.zeros((len(ids), 2), np.float32), n > 2, n * 2)

    merged = _in_customer_order([shard(["c3", "c1"]), shard(["c2", "c0"])])
    assert merged.customer_ids == ["c0", "c1", "c2", "c3"]
    assert merged.columns["churn_probability"].tolist() == [0.0, 0.1, 0.2, 0.3]
    assert merged.churned is not None and merged.churned.tolist() == [False, False, False, True]
    assert merged.value is not None and merged.value.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert merged.embeddings.shape == (4, 0)
