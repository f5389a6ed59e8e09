"""`custseq export --format mlflow`: an MLflow pyfunc model built from code that scores as `custseq score` does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.e2e.test_predict import PREDICTION_COLUMNS
from tests.e2e.test_predict import TINY_TOML as SHOP_TOML
from typer.testing import CliRunner

import custseq
from custseq.cli import app
from custseq.config import ColumnsConfig, RunConfig
from custseq.errors import ConfigError
from custseq.export.mlflow_export import built_example, export_mlflow, log_mlflow
from custseq.models.finetune import load_churn_value

mlflow = pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")

runner = CliRunner()
AS_OF = "2023-10-15"
LATER = "2023-11-30"  # scoring after the training as-of: the MLflow model is used on new data
TINY_TOML = SHOP_TOML + "\n[report]\nenabled = false\n"  # the shop of tests/e2e/test_predict.py, no report


def _shop_rows(seed: int = 5) -> pd.DataFrame:
    """150 customers over 2023; frequent buyers keep buying."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(150):
        day, gap, end = int(rng.integers(0, 60)), float(rng.choice([8, 20, 60])), int(rng.integers(120, 333))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            rows.append({"customer_id": f"k{c:03d}", "ts": ts, "amount": round(float(rng.gamma(2.0, 15.0)), 2),
                         "product": f"p{int(rng.integers(6))}"})  # fmt: skip
            day += max(1, int(rng.exponential(gap)))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    _shop_rows().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(shop, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("predict")
    (folder / "tiny.toml").write_text(TINY_TOML)
    args = ["predict", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(folder / "tiny.toml"),
            "--out", str(folder / "out")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder / "out" / "model"


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlflow") / "custseq-mlflow"
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--format", "mlflow", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture
def frame(shop) -> pd.DataFrame:
    """The transactions as a platform holds them: typed columns, canonical names, up to a later date."""
    rows = pd.read_csv(shop, parse_dates=["ts"])
    return rows[rows["ts"] <= LATER].reset_index(drop=True)


@pytest.fixture
def offline(monkeypatch):
    """Any connection off this machine fails: the round trips need no network."""
    connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise OSError(f"test is offline: connection to {address} refused")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.mark.slow  # one tiny predict for the module (about 15 s on two cores)
def test_the_exported_folder_is_code_and_custseqs_own_files_never_a_pickle(exported):
    files = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert {"MLmodel", "mlflow_model.py", "requirements.txt", "input_example.json"} <= files
    assert {"artifacts/model/model.safetensors", "artifacts/model/config.json", "artifacts/model/vocab.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle", ".joblib"))]
    pickled = [f for f in files if (exported / f).read_bytes()[:1] == b"\x80"]  # pickle protocol 2+ opcode
    assert not pickled
    mlmodel = (exported / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel  # built from code, not unpickled
    assert "python_model.pkl" not in mlmodel
    assert "set_model(CustseqPyfuncModel())" in (exported / "mlflow_model.py").read_text()
    assert (exported / "requirements.txt").read_text().count("custseq[mlflow]==") == 1


@pytest.mark.slow
def test_export_prints_no_warning(model_dir, tmp_path):
    """MLflow warns "Add type hints to the `predict` method" (a UserWarning on stderr) when it defines a model
    whose input is unannotated; the export runs in a fresh process, where that happens."""
    out = tmp_path / "m"
    done = subprocess.run(
        [sys.executable, "-m", "custseq.cli", "export", "--model", str(model_dir), "--format", "mlflow", "--out",
         str(out)], capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "MLmodel").is_file()
    assert "UserWarning" not in done.stderr and "type hints" not in done.stderr, done.stderr


@pytest.mark.slow
def test_predict_equals_custseq_score(exported, model_dir, frame, offline):
    model = mlflow.pyfunc.load_model(str(exported))
    got = model.predict(frame, params={"as_of": LATER})
    expected = custseq.score(model_dir, frame, as_of=LATER).predictions
    assert list(got.columns) == PREDICTION_COLUMNS
    assert len(got) == frame["customer_id"].nunique() > 100
    pd.testing.assert_frame_equal(got, expected)
    assert json.loads(got["next_actions"].iloc[0])[0]["action"]  # list columns: JSON text, as in predictions.csv
    earlier = model.predict(frame, params={"as_of": AS_OF})  # as_of is honoured, not ignored
    assert not np.allclose(earlier["churn_probability"], got.loc[got["customer_id"].isin(earlier["customer_id"]),
                                                                  "churn_probability"])  # fmt: skip


@pytest.mark.slow
def test_without_as_of_the_data_last_day_is_the_as_of(exported, model_dir, frame):
    got = mlflow.pyfunc.load_model(str(exported)).predict(frame)
    pd.testing.assert_frame_equal(got, custseq.score(model_dir, frame).predictions)


@pytest.mark.slow
def test_signature_and_input_example_describe_the_transactions_frame(exported, model_dir):
    info = mlflow.models.get_model_info(str(exported))
    inputs = {c.name: c.to_dict()["type"] for c in info.signature.inputs.inputs}
    assert list(inputs) == ["customer_id", "ts", "amount", "product"]  # the columns the model reads
    assert inputs["ts"] == "datetime" and inputs["amount"] == "double" and inputs["product"] == "string"
    assert inputs["customer_id"] == "any"  # text or integer ids, as custseq score takes them
    assert [c.name for c in info.signature.outputs.inputs] == PREDICTION_COLUMNS
    assert [(p.name, p.default) for p in info.signature.params.params] == [("as_of", None)]
    example = mlflow.models.Model.load(str(exported)).load_input_example(str(exported))
    assert list(example.columns) == list(inputs) and example["customer_id"].nunique() >= 2
    vocab = load_churn_value(model_dir)[0].vocab
    assert set(example["product"]) <= set(vocab.values["product"])  # values the model knows
    scored = mlflow.pyfunc.load_model(str(exported)).predict(example)
    assert sorted(scored["customer_id"]) == sorted(example["customer_id"].unique())


@pytest.mark.slow
def test_the_schema_refuses_a_frame_without_a_column_the_model_reads(exported, frame):
    with pytest.raises(mlflow.exceptions.MlflowException, match="product"):
        mlflow.pyfunc.load_model(str(exported)).predict(frame.drop(columns="product"))


@pytest.mark.slow
def test_integer_customer_ids_are_accepted_and_given_back(exported, model_dir, frame):
    numbered = frame.assign(customer_id=frame["customer_id"].str[1:].astype("int64"))
    got = mlflow.pyfunc.load_model(str(exported)).predict(numbered, params={"as_of": LATER})
    assert got["customer_id"].dtype == "int64"
    pd.testing.assert_frame_equal(got, custseq.score(model_dir, numbered, as_of=LATER).predictions)


@pytest.mark.slow
def test_an_example_file_gives_the_signature_its_own_rows(model_dir, shop, tmp_path):
    out = export_mlflow(model_dir, tmp_path / "m", example=shop)
    example = mlflow.models.Model.load(str(out)).load_input_example(str(out))
    assert len(example) == 20 and list(example.columns) == ["customer_id", "ts", "amount", "product"]
    assert example["customer_id"].iloc[0] == pd.read_csv(shop)["customer_id"].iloc[0]


@pytest.mark.slow
def test_logged_registered_and_loaded_back_from_a_local_file_store(model_dir, frame, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", (tmp_path / "mlruns").as_uri())
    with mlflow.start_run():
        info = log_mlflow(model_dir, name="custseq")
    version = mlflow.register_model(info.model_uri, "custseq")
    assert version.version in ("1", 1)
    model = mlflow.pyfunc.load_model("models:/custseq/1")
    got = model.predict(frame, params={"as_of": LATER})
    pd.testing.assert_frame_equal(got, custseq.score(model_dir, frame, as_of=LATER).predictions)
    stored = [p.name for p in (tmp_path / "mlruns").rglob("*") if p.is_file()]
    assert "model.safetensors" in stored and not [n for n in stored if n.endswith((".pkl", ".pickle"))]


@pytest.mark.slow
def test_the_built_example_names_columns_as_the_saved_mapping(model_dir):
    vocab = load_churn_value(model_dir)[0].vocab
    mapped = RunConfig(columns=ColumnsConfig(transactions={"customer_id": "CustomerID", "ts": "InvoiceDate"}))
    assert list(built_example(vocab, mapped).columns) == ["CustomerID", "InvoiceDate", "amount", "product"]
    computed = dataclasses.replace(mapped, columns=ColumnsConfig(transactions={"amount": "Quantity*UnitPrice"}))
    with pytest.raises(ConfigError, match="--example"):
        built_example(vocab, computed)


@pytest.mark.slow
def test_export_refuses_an_existing_out_folder(model_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "exists" in result.output
    assert not list((tmp_path / "taken").iterdir())


def test_export_of_a_missing_model_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no model directory" in result.output
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())  # no staging folder left behind


def test_export_without_mlflow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc", None)
    result = runner.invoke(app, ["export", "--model", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "pip install 'custseq[mlflow]'" in result.output
