"""The in-memory scoring path the service runs: the numbers of the file path, no files, one connection shared safely."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

import custseq.pipelines.score as score_module
from custseq.config import ColumnsConfig
from custseq.errors import SchemaError
from custseq.io.engine import connect
from custseq.io.tables import Tables
from custseq.pipelines.score import score_in_memory, score_with_model
from custseq.service.served import ServedModel

AS_OF = "1998-06-30"  # the model fixture's (conftest)


@pytest.fixture(scope="module")
def served(model_dir) -> ServedModel:
    return ServedModel.load(model_dir)


def _tables(cdnow_rows: pd.DataFrame, ids: list[str]) -> Tables:
    return Tables.of(cdnow_rows[cdnow_rows["customer_id"].isin(ids)], columns=ColumnsConfig())


def _metrics_without_seconds(run: object) -> dict:
    return {k: v for k, v in vars(run.metrics).items() if k != "seconds"}  # type: ignore[attr-defined]


def test_in_memory_scores_are_the_file_paths_exactly(served, cdnow_rows):
    ids = cdnow_rows["customer_id"].drop_duplicates().iloc[:400].tolist()
    tables = _tables(cdnow_rows, ids)
    files = score_with_model(served.model, served.data_config, tables, as_of=AS_OF, proposer=served.proposer)
    memory = score_in_memory(served.model, served.data_config, tables, as_of=AS_OF, proposer=served.proposer)
    assert len(memory.predictions) > 350
    pd.testing.assert_frame_equal(memory.predictions, files.predictions, check_exact=True)
    pd.testing.assert_frame_equal(memory.embeddings, files.embeddings, check_exact=True)
    assert _metrics_without_seconds(memory) == _metrics_without_seconds(files)  # row accounts, unknown values…


def test_in_memory_scoring_makes_no_folder(served, cdnow_rows, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the in-memory path made a work folder")

    monkeypatch.setattr(score_module, "work_folder", refuse)  # the tiny model proposes no next items
    ids = cdnow_rows["customer_id"].drop_duplicates().iloc[:20].tolist()
    run = score_in_memory(served.model, served.data_config, _tables(cdnow_rows, ids), as_of=AS_OF, con=served.con)
    assert run.out_dir is None and len(run.predictions) == 20


def test_a_kept_connection_gives_each_call_its_own_session(served, cdnow_rows):
    """Calls share the service's connection, at the same time too, and get the answers they get alone."""
    ids = cdnow_rows["customer_id"].drop_duplicates().tolist()
    batches = [ids[i * 7 : (i + 1) * 7] for i in range(6)]
    con = connect(served.data_config.engine)

    def scored(batch: list[str], con=None) -> pd.DataFrame:
        tables = _tables(cdnow_rows, batch)
        return score_in_memory(served.model, served.data_config, tables, as_of=AS_OF, con=con).predictions

    alone = [scored(b) for b in batches]  # a connection of their own each
    with ThreadPoolExecutor(max_workers=3) as pool:
        shared = list(pool.map(lambda b: scored(b, con), batches))
    for a, s, batch in zip(alone, shared, batches, strict=True):
        assert a["customer_id"].tolist() == sorted(batch)
        pd.testing.assert_frame_equal(a, s, check_exact=True)
    # the work ran in the sessions, none of it on the kept connection
    assert not con.execute("SELECT * FROM duckdb_tables() WHERE temporary").fetchall()
    con.close()


def test_a_refused_batch_leaves_the_kept_connection_usable(served, cdnow_rows):
    ids = cdnow_rows["customer_id"].drop_duplicates().iloc[:5].tolist()
    rows = cdnow_rows[cdnow_rows["customer_id"].isin(ids)]
    without_amounts = Tables.of(rows.drop(columns="amount"), columns=ColumnsConfig())
    with pytest.raises(SchemaError, match="amount"):
        score_in_memory(served.model, served.data_config, without_amounts, as_of=AS_OF, con=served.con)
    run = score_in_memory(served.model, served.data_config, _tables(cdnow_rows, ids), as_of=AS_OF, con=served.con)
    assert run.predictions["customer_id"].tolist() == sorted(ids)
