"""A tiny shop, a tiny model trained once on it, and labels about what each customer did after the as-of date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from custseq.cli import app

AS_OF = "2023-09-30"  # the labels' date: what customers did from 2023-10-01 on
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
batch_size = 128

[report]
enabled = false
"""


def shop_rows(seed: int = 11, customers: int = 240) -> pd.DataFrame:
    """Customers over 2023 with a favourite product; fans of p0 keep buying it after the as-of date."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        day, gap, end = int(rng.integers(0, 90)), float(rng.choice([7, 20, 45])), int(rng.integers(150, 364))
        favourite = int(rng.integers(4))
        while day < end:
            product = favourite if rng.random() < 0.7 else int(rng.integers(4))
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            amount = round(float(rng.gamma(2.0, 15.0)), 2)
            rows.append({"customer_id": f"c{c:03d}", "ts": ts.isoformat(), "amount": amount, "product": f"p{product}"})
            day += max(1, int(rng.exponential(gap)))
    return pd.DataFrame(rows)


def labels_after(rows: pd.DataFrame, as_of: str = AS_OF) -> pd.DataFrame:
    """Per customer with history up to ``as_of``: bought p0 after it (0/1) and spend after it."""
    before = rows[rows["ts"] <= as_of]
    after = rows[rows["ts"] > as_of]
    ids = sorted(before["customer_id"].unique())
    bought = set(after.loc[after["product"] == "p0", "customer_id"])
    spend = after.groupby("customer_id")["amount"].sum()
    return pd.DataFrame(
        {"customer_id": ids, "bought_p0": [int(c in bought) for c in ids],
         "spend_after": [round(float(spend.get(c, 0.0)), 2) for c in ids]}
    )  # fmt: skip


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    shop_rows().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def labels_frame(shop) -> pd.DataFrame:
    return labels_after(pd.read_csv(shop, dtype={"customer_id": str}))


@pytest.fixture(scope="session")
def model_dir(shop, tmp_path_factory) -> Path:
    """predict as of the labels' date, horizon 60 days: <out>/model."""
    folder = tmp_path_factory.mktemp("predict")
    (folder / "tiny.toml").write_text(TINY_TOML)
    args = ["predict", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(folder / "tiny.toml"),
            "--out", str(folder / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder / "out" / "model"
