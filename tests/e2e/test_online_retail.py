"""A new user's path on UCI Online Retail, as the README tells it: validate → predict (with a products table built
from the data's own descriptions, and grocery-style exclusions) → report → contacts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from custseq.cli import app

ONLINE_RETAIL = Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
EXCLUDE = r"POSTAGE|CARRIAGE|BANK CHARGES|AMAZON FEE|^MANUAL$|DOTCOM|PAPER BAG|GIFT BAG|SHOPPER BAG"
TINY = """
[model.encoder]
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_events = 32

[model.pretrain_training]
epochs = 1
batch_size = 128

[model.finetune_training]
epochs = 2
batch_size = 128

[profit]
currency = "GBP"
"""
runner = CliRunner()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason=f"real dataset not found at {ONLINE_RETAIL}"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """products.csv from the descriptions (the commonest per stock code), postage, fees and bags excluded."""
    folder = tmp_path_factory.mktemp("online-retail")
    rows = pd.read_csv(ONLINE_RETAIL, dtype={"InvoiceNo": str, "StockCode": str}, usecols=["StockCode", "Description"])
    names = rows.dropna().groupby("StockCode")["Description"].agg(lambda s: s.mode().iloc[0]).str.strip()
    products = pd.DataFrame({"product_id": names.index, "name": names.to_numpy()})
    products["exclude"] = products["name"].str.contains(EXCLUDE, case=False, regex=True)
    products.to_csv(folder / "products.csv", index=False)
    (folder / "tiny.toml").write_text(TINY)
    return folder


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_a_new_user_gets_contacts_named_actions_and_a_report(folder):
    said = " ".join(_run("validate", str(ONLINE_RETAIL), "--quarantine-dir", str(folder / "q")).split())
    assert "541,909 rows in = 401,604 used + 140,305 quarantined" in said
    out = folder / "out"
    said = _run("predict", str(ONLINE_RETAIL), "--horizon", "90d", "--products", str(folder / "products.csv"),
                "--catalogue", "retail", "--config", str(folder / "tiny.toml"), "--out", str(out))  # fmt: skip
    said = " ".join(said.split())
    assert "4,372 customers scored as of 2011-12-09 for the next 90 days" in said
    assert re.search(r"[\d,]+ customers worth a retention contact \(contacts\.csv\)", said)
    assert "first 10 to contact" in said and " GBP at stake" in said

    predictions = pq.read_table(out / "predictions.parquet")
    assert predictions.schema.field("customer_id").type == pa.int64()  # CustomerID is a number in the file
    ids = predictions.column("customer_id").to_pylist()
    assert ids == sorted(ids) and len(ids) == 4_372
    products = pd.read_csv(folder / "products.csv", dtype={"product_id": str})
    excluded = set(products.loc[products["exclude"], "product_id"])
    names = dict(zip(products["product_id"], products["name"], strict=True))
    proposed = [x for items in predictions.column("next_items").to_pylist() for x in items]
    assert proposed and all(x["item"] not in excluded and x["probability"] > 0 for x in proposed)
    assert all(x["name"] == names[x["item"]] for x in proposed if x["item"] in names)
    items = [a for plan in predictions.column("next_actions").to_pylist() for a in plan if a["kind"] == "item"]
    assert items and all(names[a["item"]] in a["action"] for a in items if a["item"] in names)

    contacts = pd.read_csv(out / "contacts.csv")
    assert len(contacts) > 100 and contacts["customer_id"].dtype == "int64"
    assert contacts["expected_gain"].is_monotonic_decreasing and (contacts["expected_gain"] > 0).all()
    assert contacts["reason"].str.len().gt(20).all() and contacts["action"].notna().all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["actions"]["catalogue"].startswith("retail")

    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="verdict"' in html and "GBP" in html and "retail" in html
    assert not re.search(r"\b(nan|None)\b", html.split("<script")[0])
