"""`custseq fit-head` and `custseq score --head` end to end on a tiny model; leakage; nothing pickled."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.downstream.conftest import AS_OF
from tests.text.small_shop import no_network
from typer.testing import CliRunner

import custseq
from custseq.cli import app
from custseq.config.downstream import HeadConfig
from custseq.downstream.artifacts import load_head
from custseq.downstream.inputs import customer_inputs
from custseq.errors import SchemaError
from custseq.io.atomic import require_complete
from custseq.io.tables import Tables
from custseq.models.finetune import load_churn_value
from custseq.pipelines.predict import saved_data_config

runner = CliRunner()
SOURCE = Path(custseq.__file__).parent / "downstream"


@pytest.fixture(scope="module")
def classification_head(shop, model_dir, labels_frame, tmp_path_factory) -> tuple[Path, str]:
    """fit-head --with-features on "bought p0 after the as-of date", through the CLI."""
    folder = tmp_path_factory.mktemp("head")
    labels = folder / "labels.csv"
    labels_frame[["customer_id", "bought_p0"]].to_csv(labels, index=False)
    args = ["fit-head", str(shop), "--model", str(model_dir), "--labels", str(labels), "--task", "classification",
            "--as-of", AS_OF, "--with-features", "--out", str(folder / "head")]  # fmt: skip
    with no_network():  # fitting a head reaches for nothing outside this machine
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder / "head", " ".join(result.output.split())


@pytest.fixture(scope="module")
def regression_head(shop, model_dir, labels_frame, tmp_path_factory) -> tuple[Path, custseq.downstream.head.FittedHead]:
    """The Python API on "spend after the as-of date", embeddings only, LightGBM even on few labels."""
    out = tmp_path_factory.mktemp("regression") / "head"
    cfg = HeadConfig(task="regression", linear_below=0, rounds=60)
    head = custseq.fit_head(model_dir, str(shop), labels_frame[["customer_id", "spend_after"]], task="regression",
                            as_of=AS_OF, head_config=cfg, out=out)  # fmt: skip
    return out, head


def test_fit_head_compares_the_head_with_features_alone_and_a_baseline(classification_head, labels_frame):
    folder, said = classification_head
    record = json.loads((folder / "head.json").read_text())
    assert (record["task"], record["label"], record["column"], record["classes"]) == (
        "classification", "bought_p0", "head_bought_p0", ["0", "1"],
    )  # fmt: skip
    assert record["as_of"] == AS_OF and record["kind"] == "lightgbm"  # 240 labels: linear_below is 200
    assert set(record["metrics"]) == {"embeddings+features", "features", "baseline"}
    assert record["metrics"]["baseline"]["auc"] == 0.5
    assert record["metrics"]["embeddings+features"]["auc"] > 0.65  # favourite products decide the label
    assert record["counts"]["used_customers"] == len(labels_frame)
    assert record["counts"]["class_1"] == int(labels_frame["bought_p0"].sum())
    assert "frequency" in record["inputs"]["numeric"] and record["inputs"]["embedding_dim"] == 16
    assert "embeddings+features" in said and "baseline" in said and "auc" in said
    assert f"head saved to {folder}" in said


def test_regression_head_through_the_api_beats_the_mean(regression_head):
    folder, head = regression_head
    assert head.kind == "lightgbm" and head.classes == () and head.column == "head_spend_after"
    rmse = {name: m["rmse"] for name, m in head.metrics.items()}
    assert set(rmse) == {"embeddings", "features", "baseline"}
    assert rmse["embeddings"] < rmse["baseline"]
    assert (folder / "model.txt").read_text().startswith("tree")  # LightGBM's own text format


def test_the_saved_head_gives_the_same_predictions(regression_head, model_dir, shop):
    folder, head = regression_head
    model, saved, _ = load_churn_value(model_dir)
    inputs = customer_inputs(model, saved_data_config(saved["data"]), Tables.of(str(shop)), head_date())
    again = load_head(folder)
    np.testing.assert_array_equal(again.predict(inputs.features, inputs.embeddings),
                                  head.predict(inputs.features, inputs.embeddings))  # fmt: skip
    assert again.metrics == head.metrics and again.counts == head.counts


def head_date():
    return custseq.config.parse_date(AS_OF)


def test_score_head_adds_the_columns(shop, model_dir, classification_head, regression_head, tmp_path):
    out = tmp_path / "scored"
    args = ["score", str(shop), "--model", str(model_dir), "--head", str(classification_head[0]),
            "--head", str(regression_head[0]), "--out", str(out)]  # fmt: skip
    with no_network():
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    require_complete(out, "test")  # the folder was rewritten whole, run.json included
    predictions = pd.read_parquet(out / "predictions.parquet")
    embeddings = pd.read_parquet(out / "embeddings.parquet").set_index("customer_id")
    # the oracle: the saved booster on the run's own embeddings.parquet
    expected = regression_head[1].model.predict(embeddings.loc[predictions["customer_id"]].to_numpy(np.float64))
    np.testing.assert_allclose(predictions["head_spend_after"], expected, rtol=1e-6)
    p = predictions["head_bought_p0"]
    assert p.between(0, 1).all() and p.nunique() > 10
    csv = pd.read_csv(out / "predictions.csv", dtype={"customer_id": str})
    assert {"head_bought_p0", "head_spend_after"} <= set(csv.columns) and len(csv) == len(predictions)


def test_score_at_the_labels_date_gives_the_fitted_heads_predictions(shop, model_dir, classification_head, tmp_path):
    """score --head rebuilds the features as fit-head built them: same data and date, same column as the head."""
    out = tmp_path / "scored"
    args = ["score", str(shop), "--model", str(model_dir), "--as-of", AS_OF, "--head", str(classification_head[0]),
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    predictions = pd.read_parquet(out / "predictions.parquet")
    model, saved, _ = load_churn_value(model_dir)
    inputs = customer_inputs(model, saved_data_config(saved["data"]), Tables.of(str(shop)), head_date())
    expected = load_head(classification_head[0]).predict(inputs.features, inputs.embeddings)
    assert predictions["customer_id"].tolist() == inputs.customer_ids
    np.testing.assert_allclose(predictions["head_bought_p0"], expected, rtol=1e-6)


def test_score_refuses_a_head_of_another_model(shop, model_dir, regression_head, tmp_path):
    other = tmp_path / "other-head"
    shutil.copytree(regression_head[0], other)
    record = json.loads((other / "head.json").read_text())
    (other / "head.json").write_text(json.dumps(record | {"model_fingerprint": "0" * 64}))
    args = ["score", str(shop), "--model", str(model_dir), "--head", str(other), "--out", str(tmp_path / "s")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "fitted on the embeddings of another model" in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()  # refused before the scoring


def test_unknown_customers_are_counted_and_left_out(shop, model_dir, labels_frame):
    strangers = pd.DataFrame({"customer_id": [f"zz{i}" for i in range(7)], "spend_after": 1.0})
    labels = pd.concat([labels_frame[["customer_id", "spend_after"]], strangers], ignore_index=True)
    head = custseq.fit_head(model_dir, str(shop), labels, task="regression", as_of=AS_OF)
    assert head.counts["unknown_customers"] == 7
    assert head.counts["used_customers"] == len(labels_frame)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(customer_id="x" + f["customer_id"]), r"none of the 240 labelled customers has a "
         r"transaction before 2023-10-01 in the data \(labels e\.g\. \['xc000'"),
        (lambda f: f.assign(bought_p0=(f.index < 3).astype(int)), r"too few customers of class\(es\) \{'1': 3\}"),
        (lambda f: f.iloc[:12].assign(bought_p0=[0, 1] * 6), r"only 12 labelled customers have history before"),
    ],
)  # fmt: skip
def test_labels_a_head_cannot_learn_from_are_refused(shop, model_dir, labels_frame, change, message):
    labels = change(labels_frame[["customer_id", "bought_p0"]].copy())
    with pytest.raises(SchemaError, match=message):
        custseq.fit_head(model_dir, str(shop), labels, task="classification", as_of=AS_OF)


def test_cli_label_errors_are_one_line(shop, model_dir, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,score\nc000,0.25\nc001,0.5\n")
    args = ["fit-head", str(shop), "--model", str(model_dir), "--labels", str(labels), "--task", "classification",
            "--out", str(tmp_path / "head")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not whole" in result.output and "--task regression" in " ".join(result.output.split())


def test_rows_after_the_as_of_date_change_no_input(shop, model_dir):
    """Leakage (STYLE P6): amounts, products and new rows and customers after the labels' date move nothing."""
    model, saved, _ = load_churn_value(model_dir)
    cfg = saved_data_config(saved["data"])
    rows = pd.read_csv(shop, dtype={"customer_id": str})
    after = rows["ts"] > AS_OF
    assert after.sum() > 100 and (~after).sum() > 100
    changed = rows.copy()
    changed.loc[after, "amount"] *= 10
    changed.loc[after, "product"] = "p-future"
    extra = changed[after].head(40).assign(customer_id=lambda f: "new-" + f["customer_id"])
    changed = pd.concat([changed, extra, changed[after].head(40)], ignore_index=True)
    before = customer_inputs(model, cfg, Tables.of(rows), head_date())
    moved = customer_inputs(model, cfg, Tables.of(changed), head_date())
    assert moved.customer_ids == before.customer_ids
    np.testing.assert_array_equal(moved.embeddings, before.embeddings)
    assert moved.features.equals(before.features)
    assert str(before.as_of) == AS_OF


def test_nothing_is_pickled(classification_head, regression_head, monkeypatch):
    for folder in (classification_head[0], regression_head[0]):
        for file in folder.iterdir():
            text = file.read_bytes()
            assert not text.startswith(b"\x80"), f"{file} looks like a pickle"
            text.decode("utf-8")  # every file is text: JSON or LightGBM's model format
    sources = " ".join(p.read_text() for p in SOURCE.glob("*.py"))
    assert not any(f"import {name}" in sources for name in ("pickle", "joblib", "dill", "cloudpickle"))

    def refuse(*args, **kwargs):
        raise AssertionError("a head was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    features = pa.table({"customer_id": ["a"]})
    head = load_head(regression_head[0])
    assert np.isfinite(head.predict(features, np.zeros((1, 16), np.float32))).all()
    assert dataclasses.asdict(head.config)["task"] == "regression"


def test_an_output_under_a_file_is_refused_before_anything_is_read(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    args = ["fit-head", str(tmp_path / "missing.csv"), "--model", str(tmp_path / "no-model"), "--labels",
            str(tmp_path / "no-labels.csv"), "--task", "regression", "--out", str(a_file / "head")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"{a_file} is a file, not a folder" in " ".join(result.output.split())
