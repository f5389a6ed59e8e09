"""The same input gives byte-identical outputs, however DuckDB splits the work across threads."""

from __future__ import annotations

import custseq
from custseq.datasets.synthetic import write_transactions


def test_prepare_twice_writes_identical_files(tmp_path):
    data = write_transactions(tmp_path / "log.parquet", 120_000, seed=5)  # large enough for parallel aggregation
    first = custseq.prepare(data, out=tmp_path / "a", horizon="90d").out_dir
    second = custseq.prepare(data, out=tmp_path / "b", horizon="90d").out_dir
    files = sorted(p.relative_to(first) for p in first.rglob("*.parquet"))
    assert len(files) > 10
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.parquet"))
    differing = [str(f) for f in files if (first / f).read_bytes() != (second / f).read_bytes()]
    assert not differing
    assert (first / "vocab.json").read_bytes() == (second / "vocab.json").read_bytes()
