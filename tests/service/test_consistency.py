"""API ↔ CLI: CDNOW customers scored through POST /score get the numbers `custseq score` writes for the same rows."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from custseq.cli import app
from custseq.config.service import MODEL_ENV, ServiceSettings
from custseq.service import app_from_environment, create_app

AS_OF = "1998-06-30"


def test_api_and_cli_give_identical_scores_and_embeddings(model_dir, cdnow_rows, sample_ids, real_body, tmp_path):
    data = tmp_path / "sample.csv"
    cdnow_rows[cdnow_rows["customer_id"].isin(sample_ids)].to_csv(data, index=False)
    args = ["score", str(data), "--model", str(model_dir), "--as-of", AS_OF, "--out", str(tmp_path / "scores")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    cli = pq.read_table(tmp_path / "scores" / "predictions.parquet").to_pandas()
    cli_embeddings = pq.read_table(tmp_path / "scores" / "embeddings.parquet").to_pandas()

    client = TestClient(create_app(model_dir, ServiceSettings()))
    scores, vectors = client.post("/score", json=real_body), client.post("/embed", json=real_body)
    assert scores.status_code == vectors.status_code == 200, scores.text + vectors.text
    api = pd.DataFrame(scores.json()["predictions"])

    # the CSV's ids are read as text with their leading zeros (00001), as the API sends them
    assert cli["customer_id"].astype(str).tolist() == api["customer_id"].tolist() == sorted(sample_ids)
    assert list(api.columns) == list(cli.columns)
    for column in cli.columns:
        if column in ("next_items", "next_actions"):  # parquet: lists of structs; the API: lists of objects
            assert [list(map(dict, v)) for v in cli[column]] == api[column].tolist(), column
        else:
            assert cli[column].tolist() == api[column].tolist(), column  # identical, not approximately
    api_vectors = [e["embedding"] for e in vectors.json()["embeddings"]]
    assert cli_embeddings.drop(columns="customer_id").to_numpy().tolist() == api_vectors


def test_a_worker_with_one_thread_gives_the_same_numbers(model_dir, real_body, monkeypatch):
    """custseq serve's workers run DuckDB and torch on one thread each (ServiceSettings.threads)."""
    default = TestClient(create_app(model_dir, ServiceSettings(threads=2))).post("/score", json=real_body)
    monkeypatch.setenv(MODEL_ENV, str(model_dir))
    worker = TestClient(app_from_environment())  # what uvicorn's workers build (conftest restores torch's threads)
    assert torch.get_num_threads() == 1
    one = worker.post("/score", json=real_body)
    assert default.status_code == one.status_code == 200
    assert default.json() == one.json()
