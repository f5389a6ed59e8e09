"""A tiny model trained once on CDNOW customers (canonical column names), and the CSV of those customers' rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from custseq.cli import app
from custseq.datasets import load_cdnow

AS_OF = "1998-06-30"
TINY_TOML = """
[window]
max_train_windows = 1

[model]
pretraining = false

[model.encoder]
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_events = 8

[model.finetune_training]
epochs = 1
batch_size = 256
"""


@pytest.fixture(scope="session")
def cdnow_rows() -> pd.DataFrame:
    """The first 1,500 CDNOW customers with the data contract's names (ts, amount, quantity)."""
    rows = load_cdnow().rename(columns={"date": "ts", "dollar_value": "amount", "number_of_cds": "quantity"})
    keep = rows["customer_id"].drop_duplicates().iloc[:1500]
    return rows[rows["customer_id"].isin(keep)].reset_index(drop=True)


@pytest.fixture(scope="session")
def model_dir(cdnow_rows, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    data, config = folder / "cdnow.csv", folder / "tiny.toml"
    cdnow_rows.to_csv(data, index=False)
    config.write_text(TINY_TOML)
    args = ["predict", str(data), "--horizon", "90d", "--as-of", AS_OF, "--config", str(config),
            "--out", str(folder / "run")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder / "run" / "model"


@pytest.fixture(scope="session")
def sample_ids(cdnow_rows) -> list[str]:
    """Eight CDNOW customers spread over the table."""
    return cdnow_rows["customer_id"].drop_duplicates().iloc[::187].tolist()[:8]


@pytest.fixture(scope="session")
def real_body(cdnow_rows, sample_ids) -> dict:
    """A /score request with the sample customers' transactions."""
    chosen = cdnow_rows[cdnow_rows["customer_id"].isin(sample_ids)]
    return {"as_of": AS_OF, "customers": [
        {"customer_id": cid, "transactions": [{"ts": ts.isoformat(), "amount": float(a), "quantity": float(q)}
                                              for ts, a, q in zip(g["ts"], g["amount"], g["quantity"], strict=True)]}
        for cid, g in chosen.groupby("customer_id")]}  # fmt: skip


@pytest.fixture(autouse=True)
def _torch_threads_kept():
    """app_from_environment sets torch's threads, as a worker process of its own should; the test process keeps its."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
