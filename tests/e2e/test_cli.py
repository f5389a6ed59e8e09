"""End-to-end tests of the command line, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from custseq.cli import app

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.csv.gz"

runner = CliRunner()


@pytest.fixture
def shop_csv(tmp_path: Path) -> Path:
    """A year of purchases of 40 customers with user-style column names, and one guest row."""
    rows = []
    for c in range(40):
        for k in range(1 + c % 7):
            day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=(c * 13 + k * 41) % 360)
            rows.append({"CustomerID": f"{c:04d}", "InvoiceDate": f"{day:%Y-%m-%d} 10:00:00",
                         "Quantity": 1 + k % 3, "UnitPrice": 5.0 + c % 4, "StockCode": f"P{(c + k) % 9}"})  # fmt: skip
    rows.append({"CustomerID": "", "InvoiceDate": "2023-05-05 10:00:00", "Quantity": 1, "UnitPrice": 3.0,
                 "StockCode": "P1"})  # fmt: skip
    path = tmp_path / "shop.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _ok(result) -> None:
    assert result.exit_code == 0, result.output + (str(result.exception) if result.exception else "")


def test_prepare_writes_every_output_consistently(shop_csv, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", str(shop_csv), "--horizon", "60d", "--out", str(out), "--max-events", "5"])
    _ok(result)
    summary = json.loads((out / "prepare.json").read_text())
    tx = summary["tables"]["transactions"]
    assert tx["rows_in"] == tx["rows_used"] + tx["rows_quarantined"]
    assert tx["quarantined_by_rule"]["missing_customer_id"]["rows"] == 1
    assert {m["column"]: m["source"] for m in tx["mapping"]}["amount"] == "Quantity × UnitPrice"
    assert pq.read_table(out / "quarantine" / "transactions.parquet").column("rule").to_pylist() == [
        "missing_customer_id"
    ]
    score = next(w for w in summary["windows"] if w["role"] == "score")
    features = pq.read_table(out / "windows" / score["as_of"] / "features.parquet")
    assert features.num_rows == score["customers"] == 40
    sequences = pq.ParquetDataset(out / "windows" / score["as_of"] / "sequences").read()
    assert sorted(sequences.column("customer_id").to_pylist()) == sorted(features.column("customer_id").to_pylist())
    assert max(sequences.column("length").to_pylist()) == 5
    for w in summary["windows"]:
        if w["role"] != "score":
            labels = pq.read_table(out / "windows" / w["as_of"] / "labels.parquet")
            assert labels.num_rows == w["customers"]
    assert "windows" in result.output and str(out) in result.output.replace("\n", "")


def test_prepare_takes_an_as_of_after_the_last_row_and_says_so(shop_csv, tmp_path):
    out = tmp_path / "out"
    args = ["prepare", str(shop_csv), "--as-of", "2024-01-15", "--horizon", "60d", "--out", str(out)]
    result = runner.invoke(app, args)
    _ok(result)
    note = "  note: last row 2023-12-24, 22 days before as-of: training labels end there"
    assert note in result.output.splitlines() and len(note) <= 80  # one line at 80 columns
    summary = json.loads((out / "prepare.json").read_text())
    assert summary["notes"] == [note.removeprefix("  note: ")]
    assert [w["label_end"] for w in summary["windows"][:2]] == ["2024-03-16T00:00:00", "2023-12-25T00:00:00"]


def test_validate_reports_and_writes_quarantine(shop_csv, tmp_path):
    q = tmp_path / "q"
    result = runner.invoke(app, ["validate", str(shop_csv), "--quarantine-dir", str(q)])
    _ok(result)
    assert "missing_customer_id" in result.output
    assert pq.read_table(q / "transactions.parquet").num_rows == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "{missing}", "--out", "{out}"], "does not exist"),
        (["prepare", "{csv}", "--out", "{out}", "--horizon", "soon"], "horizon 'soon' is not understood"),
        (["prepare", "{csv}", "--out", "{out}", "--horizon", "5y"], "too long for the history"),
        (["prepare", "{csv}", "--out", "{out}", "--as-of", "2034-01-01"], "more than 10 years after the last row"),
        (["prepare", "{csv}", "--out", "{out}", "--column", "customer_id=Nope"], "has no column 'Nope'"),
        (["prepare", "{csv}", "--out", "{out}", "--column", "colour=StockCode"], "no column role 'colour'"),
        (["validate", "{no_amount}"], "missing column(s) ['amount']"),
        (["validate", "{empty}"], "has no rows"),
    ],
)
def test_user_errors_exit_2_with_one_clear_line(args, message, shop_csv, tmp_path):
    no_amount = tmp_path / "no_amount.csv"
    pd.read_csv(shop_csv).drop(columns=["UnitPrice"]).to_csv(no_amount, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("CustomerID,InvoiceDate,Quantity,UnitPrice\n")
    values = {"missing": tmp_path / "nope.csv", "out": tmp_path / "out", "csv": shop_csv, "no_amount": no_amount,
              "empty": empty}  # fmt: skip
    result = runner.invoke(app, [a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_installed_console_script_fails_without_traceback(tmp_path):
    exe = shutil.which("custseq") or str(Path(sys.executable).parent / "custseq")
    proc = subprocess.run([exe, "validate", str(tmp_path / "missing.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_demo_predicts_every_bundled_cdnow_customer(tmp_path):
    # The demo's own settings take ~3 min on 2 cores (make demo); a tiny model keeps this test short.
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        "[model]\npretraining = false\n[model.encoder]\nd_model = 16\nn_heads = 2\nn_layers = 1\nd_ff = 32\n"
        "max_events = 8\n[model.finetune_training]\nepochs = 1\nbatch_size = 512\n"
    )
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--horizon", "181d", "--config", str(tiny)])
    _ok(result)
    assert "23,570 customers scored as of 1998-06-30" in result.output.replace("\n", " ")
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["tables"]["transactions"]["rows_in"] == 69_659 and metrics["customers_scored"] == 23_570
    predictions = pq.read_table(tmp_path / "demo" / "predictions.parquet")
    assert predictions.num_rows == 23_570 == len(set(predictions.column("customer_id").to_pylist()))


@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason=f"real dataset not found at {ONLINE_RETAIL}")
def test_online_retail_as_a_user_brings_it(tmp_path):
    out = tmp_path / "or"
    result = runner.invoke(
        app, ["prepare", str(ONLINE_RETAIL), "--as-of", "2011-09-09", "--horizon", "91d", "--out", str(out)]
    )
    _ok(result)
    summary = json.loads((out / "prepare.json").read_text())
    tx = summary["tables"]["transactions"]
    assert tx["rows_in"] == 541_909 == tx["rows_used"] + tx["rows_quarantined"]
    assert tx["quarantined_by_rule"]["missing_customer_id"]["rows"] == 135_080
    detected = {m["column"]: m["source"] for m in tx["mapping"]}
    assert detected == {"customer_id": "CustomerID", "ts": "InvoiceDate", "product": "StockCode",
                        "quantity": "Quantity", "order_id": "InvoiceNo", "amount": "Quantity × UnitPrice"}  # fmt: skip
    assert tx["extras"] == {"description": "text", "country": "category"}
    guests = pq.read_table(out / "quarantine" / "transactions.parquet").to_pandas()
    assert guests.loc[guests["rule"] == "missing_customer_id", "CustomerID"].isna().all()
    score = next(w for w in summary["windows"] if w["role"] == "score")
    features = pq.read_table(out / "windows" / score["as_of"] / "features.parquet").to_pandas()
    # Cancellations (invoice numbers starting with C) are netted as refunds.
    assert (features["refund_amount"] > 0).sum() > 500
    assert (features["total_spend"] < features["gross_spend"]).sum() == (features["refund_amount"] > 0).sum()
    assert summary["sequence"]["token"] == "order"
