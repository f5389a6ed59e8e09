"""End-to-end: `custseq predict`, `custseq score`, the Python API and the estimator on a small shop."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import custseq
from custseq.cli import app
from custseq.config import load_config
from custseq.errors import CustseqError
from custseq.io import run_files
from custseq.io.atomic import work_folder
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import RunFolder
from custseq.io.tables import Tables
from custseq.models.artifacts import read_manifest
from custseq.models.finetune import load_churn_value
from custseq.models.side_by_side import side_by_side, torch_threads
from custseq.pipelines import outputs, shards
from custseq.pipelines import score as score_module
from custseq.pipelines.predict import NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.prepare import prepare_scoring_sequences
from custseq.pipelines.score import load_item_proposer
from custseq.pipelines.shards import shard_windows
from custseq.scoring.segments import SEGMENTS

runner = CliRunner()
AS_OF = "2023-10-15"
PREDICTION_COLUMNS = ["customer_id", "churn_probability", "clv_expected", "clv_p10", "clv_p50", "clv_p90",
                      "clv_if_active", "p_alive", "lapsed_regular", "segment", "value_score", "contact_profit",
                      "next_items", "retention_flag", "next_actions"]  # fmt: skip
TINY_TOML = """
[model.encoder]
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_events = 8

[model.pretrain_training]
epochs = 1
batch_size = 64

[model.finetune_training]
epochs = 2
batch_size = 64

[profit]
currency = "EUR"
"""


def _shop_rows(seed: int = 3) -> pd.DataFrame:
    """200 customers over a year; frequent buyers keep buying, so churn and value are learnable."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(200):
        day, gap = int(rng.integers(0, 60)), float(rng.choice([8, 20, 60]))
        end = int(rng.integers(120, 365))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            amount, product = round(float(rng.gamma(2.0, 15.0)), 2), f"p{int(rng.integers(6))}"
            rows.append({"customer_id": f"k{c:03d}", "ts": ts, "amount": amount, "product": product})
            day += max(1, int(rng.exponential(gap)))
    return pd.DataFrame(rows)


LAPSED = [f"r{c}" for c in range(6)]


def _lapsed_regulars() -> pd.DataFrame:
    """Regulars who bought every 4 days until 2023-07-16, then went silent: over 90 days, 22 of their gaps."""
    days = range(0, 200, 4)
    return pd.DataFrame(
        [{"customer_id": c, "ts": dt.date(2023, 1, 1) + dt.timedelta(days=d), "amount": 25.0, "product": "p1"}
         for c in LAPSED for d in days]
    )  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    guest = pd.DataFrame({"customer_id": [None], "ts": [dt.date(2023, 5, 1)], "amount": [9.5], "product": ["p1"]})
    pd.concat([_shop_rows(), _lapsed_regulars(), guest]).to_csv(path, index=False)  # the guest: quarantined
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture(scope="module")
def predicted(shop, tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "out"
    args = ["predict", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "customers scored" in result.output and "highest churn risk" in result.output.replace("\n", " ")
    said = " ".join(result.output.split())
    assert "worth a retention contact (contacts.csv)" in said and "first 10 to contact" in said
    assert re.search(r"total expected value [\d,]+ EUR", said) and re.search(r"[\d,]+ EUR at stake", said)
    return out


def test_predict_writes_the_output_contract(predicted, shop):
    assert {"predictions.parquet", "predictions.csv", "embeddings.parquet", "metrics.json", "model", "quarantine"} <= {
        p.name for p in predicted.iterdir()
    }
    p = pq.read_table(predicted / "predictions.parquet").to_pandas()
    assert list(p.columns) == PREDICTION_COLUMNS
    rows = pd.read_csv(shop)
    expected = sorted(rows.loc[rows["ts"] <= AS_OF, "customer_id"].dropna().unique())  # not the guest
    assert p["customer_id"].tolist() == expected  # every customer with history, once, sorted
    assert p["churn_probability"].between(0, 1).all() and p["p_alive"].between(0, 1).all()
    values = p[["clv_expected", "clv_p10", "clv_p50", "clv_p90"]]
    assert np.isfinite(values.to_numpy()).all() and (values >= 0).all().all()
    assert (p["clv_p10"] <= p["clv_p50"]).all() and (p["clv_p50"] <= p["clv_p90"]).all()
    assert (p["clv_if_active"] >= p["clv_expected"] - 1e-9).all()  # E[value | a purchase] ≥ E[value]
    assert set(p["segment"]) <= set(SEGMENTS) and p["value_score"].between(100, 150).all()
    attriers = p[p["segment"] == "high_value_potential_attrier"]
    assert (attriers["churn_probability"] > 0.65).all()
    lapsed = p["customer_id"].isin(LAPSED)
    assert p.loc[lapsed, "lapsed_regular"].all()  # the planted regulars, silent for over 20 of their usual gaps
    flagged = (p["churn_probability"] > 0.5) | p["lapsed_regular"]  # the default threshold, or lapsed
    assert (p["retention_flag"] == flagged).all()
    assert set(p.loc[lapsed, "segment"]) <= {"high_value_potential_attrier", "hibernating", "at_risk"}
    contacts = pd.read_csv(predicted / "contacts.csv", dtype={"customer_id": str})
    worth = p[p["retention_flag"] & (p["contact_profit"] > 0)]
    worth = worth.sort_values("contact_profit", ascending=False, kind="stable")
    assert contacts["customer_id"].tolist() == worth["customer_id"].tolist()  # one list, best expected gain first
    planted = contacts[contacts["customer_id"].isin(LAPSED)]
    assert len(planted) == len(LAPSED)  # 50 purchase days of 25: worth more than the contact
    assert planted["reason"].str.match(r"usually buys every 4 days; silent for 9\d days \(2\d of their").all()
    plans = p["next_actions"].map(list)
    assert (plans.map(len) == 3).all()
    flagged = plans[p["retention_flag"]]
    assert flagged.map(lambda plan: all(a["kind"] == "retention" for a in plan)).all()  # replaced, by default
    items = plans[~p["retention_flag"]].map(lambda plan: [a["item"] for a in plan if a["kind"] == "item"])
    assert items.map(len).sum() > 0 and set(items.sum()) <= {f"p{i}" for i in range(6)}  # the shop's products
    proposed = p["next_items"].map(list)  # lists of records in Parquet, the same as JSON text in CSV
    assert proposed.map(lambda xs: [x["probability"] for x in xs] == sorted((x["probability"] for x in xs),
                                                                             reverse=True)).all()  # fmt: skip
    csv = pd.read_csv(predicted / "predictions.csv", dtype={"customer_id": str})
    assert csv["customer_id"].tolist() == expected
    assert np.allclose(csv["churn_probability"], p["churn_probability"], rtol=0, atol=5e-5)  # 4 decimals in CSV
    assert csv["next_actions"].map(json.loads).tolist() == plans.tolist()
    assert csv["next_items"].map(json.loads).tolist() == [[dict(x) for x in xs] for xs in proposed]
    assert np.allclose(csv["clv_expected"], p["clv_expected"], rtol=0, atol=0.005)  # money to the cent
    assert (csv["clv_expected"].map(lambda x: len(repr(x).split(".")[-1])) <= 2).all()
    e = pq.read_table(predicted / "embeddings.parquet").to_pandas()
    assert e["customer_id"].tolist() == expected and e.shape[1] == 1 + 16


def test_predict_writes_what_the_report_explains(predicted):
    """Validation curves, training history, attention, profit, bias audit and the review list."""
    validation = pq.read_table(predicted / "validation.parquet").to_pandas()
    metrics = json.loads((predicted / "metrics.json").read_text())
    assert len(validation) == metrics["validation"]["validation_customers"] == metrics["audit"]["labelled_customers"]
    assert {"churned", "value", "churn_probability", "btyd_churn_probability", "segment"} <= set(validation)
    auc = roc_auc_score(validation["churned"], validation["churn_probability"])
    # the same customers the predictor was chosen on (and the network early-stopped on)
    assert auc == pytest.approx(metrics["model_choice"]["churn_auc"])
    history = json.loads((predicted / "history.json").read_text())
    assert len(history["pretrain"]) == 1 and len(history["finetune"]) == 2  # the tiny config's epochs
    assert all(math.isfinite(e["train_loss"]) for e in history["pretrain"] + history["finetune"])
    attention = json.loads((predicted / "attention.json").read_text())
    assert attention["layers"] == 1 and 1 <= len(attention["customers"]) <= 4
    for sample in attention["customers"]:
        assert len(sample["weights"]) == 1 and len(sample["weights"][0]) == len(sample["events"]) <= 8
        assert 0 < sum(sample["weights"][0]) <= 1
    profit = json.loads((predicted / "profit.json").read_text())
    p = pq.read_table(predicted / "predictions.parquet").to_pandas()
    assert profit["customers"] == len(p)
    best = profit["best"]["saved_value"]
    assert best["k"] == (p["contact_profit"] > 0).sum()  # the best campaign contacts exactly the profitable ones
    assert best["profit"] == pytest.approx(p.loc[p["contact_profit"] > 0, "contact_profit"].sum())
    assert best["profit"] >= profit["best"]["churn_probability"]["profit"] >= profit["best"]["random"]["profit"] - 1e-9
    audit = json.loads((predicted / "audit.json").read_text())
    assert audit["labelled_customers"] == len(validation) and "tenure" in {a["attribute"] for a in audit["attributes"]}
    review = pd.read_csv(predicted / "review.csv", dtype={"customer_id": str})
    assert len(review) == metrics["review_customers"] and set(review["customer_id"]) <= set(p["customer_id"])
    assert list(review.columns[:2]) == ["customer_id", "reason"]


def test_plan_replans_saved_predictions_with_another_threshold_and_catalogue(predicted, tmp_path):
    catalogue = tmp_path / "actions.yaml"
    catalogue.write_text(
        "retention:\n  - when: {}\n    actions: [call them, send a voucher]\n"
        "growth:\n  - when: {}\n    actions: [say thanks]\nitem_action: 'suggest {item}'\n"
    )
    out = tmp_path / "replanned"
    args = ["plan", str(predicted), "--threshold", "0.3", "--catalogue", str(catalogue), "--mode", "augment",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    before = pq.read_table(predicted / "predictions.parquet").to_pandas()
    after = pq.read_table(out / "predictions.parquet").to_pandas()
    assert after["customer_id"].tolist() == before["customer_id"].tolist()
    assert (after["retention_flag"] == (after["churn_probability"] > 0.3)).all()
    assert after["retention_flag"].sum() > before["retention_flag"].sum()
    for flag, plan in zip(after["retention_flag"], after["next_actions"].map(list), strict=True):
        texts = [a["action"] for a in plan]
        if flag:  # augment: the catalogue's first retention action, then the model's items
            assert texts[0] == "call them" and [a["kind"] for a in plan] == ["retention", "item", "item"]
        else:
            assert all(t.startswith("suggest ") or t == "say thanks" for t in texts)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["actions"]["retention_threshold"] == 0.3 and metrics["actions"]["mode"] == "augment"
    assert (out / "audit.json").is_file() and (out / "validation.parquet").is_file()  # the run's other files
    html = (out / "report.html").read_text()  # the report is written again for the new plans, whole
    assert "could not be drawn" not in html and "call them" in html


def test_plan_refuses_a_bad_catalogue_or_folder(predicted, shop, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"retention": [], "growth": []}')
    result, output = _invoke("plan", str(predicted), "--catalogue", str(bad), "--out", str(tmp_path / "x"))
    assert result.exit_code != 0 and "bad.json" in output and "Traceback" not in output
    result, output = _invoke("plan", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "nowhere is not a folder" in output
    partial = tmp_path / "partial"  # a predict stopped before its end, or an older custseq's folder
    partial.mkdir()
    shutil.copy(predicted / "predictions.parquet", partial)
    for command in ("plan", "report"):
        result, output = _invoke(command, str(partial))
        assert result.exit_code == 2 and "has no run.json" in output and "Traceback" not in output
    shutil.copytree(predicted / "model", partial / "model")
    shutil.copy(predicted / "metrics.json", partial)
    result, output = _invoke("score", str(shop), "--model", str(partial / "model"), "--out", str(tmp_path / "s"))
    assert result.exit_code == 2 and "has no run.json" in output and not (tmp_path / "s").exists()


def test_plan_with_a_products_table_names_items_and_never_proposes_excluded_ones(predicted, tmp_path):
    products = tmp_path / "products.csv"
    pd.DataFrame({"product_id": [f"p{i}" for i in range(6)], "name": [f"Tea no. {i}" for i in range(6)],
                  "exclude": ["yes", "", "", "", "", ""]}).to_csv(products, index=False)  # fmt: skip
    out = tmp_path / "named"
    result, output = _invoke("plan", str(predicted), "--products", str(products), "--out", str(out))
    assert result.exit_code == 0, output
    p = pq.read_table(out / "predictions.parquet").to_pandas()
    actions = [a for plan in p["next_actions"].map(list) for a in plan if a["kind"] == "item"]
    assert actions and all(a["item"] != "p0" for a in actions)  # p0 excluded
    assert all(a["action"] == f"Recommend Tea no. {a['item'][1]} ({a['item']})" for a in actions)


def test_plan_applies_the_reviewers_decisions_on_review_csv(predicted, tmp_path):
    review = pd.read_csv(predicted / "review.csv", dtype={"customer_id": str, "decision": object})
    assert {"decision", "override_churn_probability", "override_clv_expected"} <= set(review.columns)
    assert len(review) >= 2, "the shop run lists customers for review"
    review.loc[0, "decision"] = "btyd"
    review.loc[1, ["decision", "override_churn_probability"]] = ["override", 0.99]
    filled = tmp_path / "review.csv"
    review.to_csv(filled, index=False)
    out = tmp_path / "reviewed"
    result, output = _invoke("plan", str(predicted), "--decisions", str(filled), "--out", str(out))
    assert result.exit_code == 0, output
    assert "reviewers' decisions applied: 0 custseq, 1 btyd, 1 override" in " ".join(output.split())
    p = pq.read_table(out / "predictions.parquet").to_pandas().set_index("customer_id")
    first, second = review["customer_id"].iloc[0], review["customer_id"].iloc[1]
    assert p.loc[first, "churn_probability"] == pytest.approx(review["btyd_churn_probability"].iloc[0])
    assert p.loc[second, "churn_probability"] == pytest.approx(0.99) and bool(p.loc[second, "retention_flag"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["review_decisions"] == {"custseq": 0, "btyd": 1, "override": 1, "unknown customers": 0}
    assert len(pd.read_csv(out / "decisions.csv")) == 2  # kept for a later calibration


def test_predict_refuses_a_missing_products_table_before_training(shop, tmp_path):
    result, output = _invoke("predict", str(shop), "--products", str(tmp_path / "nope.csv"), "--out", str(tmp_path))
    assert result.exit_code == 2 and "the products table" in output and "does not exist (--products" in output
    assert "pre-training" not in output and "fine-tuning" not in output  # refused before any training


def test_plan_with_a_shipped_catalogue_by_name(predicted, tmp_path):
    out = tmp_path / "grocery"
    result, output = _invoke("plan", str(predicted), "--catalogue", "grocery", "--out", str(out))
    assert result.exit_code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["actions"]["catalogue"] == "grocery (shipped with custseq)"
    p = pq.read_table(out / "predictions.parquet").to_pandas()
    texts = {a["action"] for plan in p["next_actions"].map(list) for a in plan}
    assert not any("shipping" in t.lower() for t in texts) and any(t.startswith("Coupon on p") for t in texts)


def test_predict_writes_a_report_with_every_section_drawn(predicted):
    from custseq.report import SECTIONS

    html = (predicted / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    assert "could not be drawn" not in html  # every section found its files in the shape it reads
    assert "customer id is empty" in html  # the guest row's quarantine rule and reason
    assert "mixed with each customer&#x27;s own recent items" in html  # how the next items were proposed
    not_available = html.count('class="na"')
    assert not_available <= 1, not_available  # at most the back-test's pointer to `custseq evaluate`
    assert "attention" in html and "<svg" in html and "Plotly" in html


def test_metrics_and_model_record_how_it_was_trained(predicted):
    metrics = json.loads((predicted / "metrics.json").read_text())
    assert metrics["as_of"] == AS_OF and metrics["horizon_days"] == 60 and metrics["pretrained"]
    v = metrics["validation"]
    assert 0 <= v["churn_auc"] <= 1 and v["validation_customers"] > 0
    assert v["churn_brier_before"] >= 0 and v["churn_brier_after"] >= 0
    assert "backtest" in metrics  # the 60 days after the as-of date are in the data
    manifest = read_manifest(predicted / "model")
    assert manifest.model_type == "custseq-churn-value"
    assert manifest.extra["task_weighting"]["mode"] == "uncertainty"
    assert len(manifest.extra["task_weighting"]["weights"]) == 2
    config = json.loads((predicted / "model" / "config.json").read_text())
    assert {"tabular", "calibration", "finetune", "encoder", "data"} <= set(config)
    assert not list((predicted / "model").glob("*.pt"))  # weights only in safetensors
    mixture = metrics["actions"]["item_mixture"]  # fitted on the latest training window, saved for `score`
    assert metrics["actions"]["item_field"] == "product" and 0 <= mixture["weight"] <= 1 and mixture["customers"] > 0
    assert mixture["fitted_on"] == metrics["training_windows"][0]
    saved = json.loads((predicted / "model" / "next-event" / "item-mixture.json").read_text())
    assert saved == mixture


def test_score_with_the_saved_model_reproduces_predict(predicted, shop, tmp_path):
    out = tmp_path / "scores"
    args = ["score", str(shop), "--model", str(predicted / "model"), "--as-of", AS_OF, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    scored = pq.read_table(out / "predictions.parquet").to_pandas()
    original = pq.read_table(predicted / "predictions.parquet").to_pandas()
    assert scored["customer_id"].tolist() == original["customer_id"].tolist()
    numeric = [c for c in PREDICTION_COLUMNS[1:] if pd.api.types.is_float_dtype(original[c])]
    assert {"churn_probability", "clv_p90", "p_alive", "contact_profit"} <= set(numeric)
    for column in numeric:
        assert np.allclose(scored[column], original[column], rtol=1e-5, atol=1e-6), column
    for column in ("segment", "next_items", "next_actions", "retention_flag"):  # the saved next-event head too
        files = [pq.read_table(folder / "predictions.parquet", columns=[column]) for folder in (out, predicted)]
        assert files[0].column(0).to_pylist() == files[1].column(0).to_pylist(), column
    assert np.allclose(scored["value_score"], original["value_score"])


def test_the_two_forward_passes_side_by_side_give_the_numbers_of_one_after_the_other(predicted, shop, monkeypatch):
    """score runs the network and the next-event head at the same time on one thread each: the same outputs as
    both on every thread, one after the other."""
    rows = pd.read_csv(shop)
    ran = []

    def recorded(first, second):
        ran.append(torch.get_num_threads())
        return side_by_side(first, second)

    monkeypatch.setattr(outputs, "side_by_side", recorded)
    with torch_threads(2):
        together = custseq.score(predicted / "model", rows, as_of=AS_OF)
    monkeypatch.setattr(outputs, "side_by_side", lambda first, second: (first(), second()))
    with torch_threads(2):
        apart = custseq.score(predicted / "model", rows, as_of=AS_OF)
    assert ran == [2]  # side by side, on one thread each
    assert together.predictions["next_items"].str.len().gt(2).any()  # items were proposed
    pd.testing.assert_frame_equal(together.predictions, apart.predictions, check_exact=True)
    pd.testing.assert_frame_equal(together.embeddings, apart.embeddings, check_exact=True)


SHARDS_CASES = {  # (item level, integer ids); a products table names some items and gives their categories
    "text ids, products": ("item", False),
    "integer ids, categories": ("category", True),
}


@pytest.mark.parametrize("case", SHARDS_CASES)
def test_score_into_a_folder_shard_by_shard_writes_the_files_of_the_whole_window_held(
    case, predicted, shop, tmp_path, monkeypatch
):
    """score into a folder scores one sequence shard at a time and writes its results in blocks, never holding
    them all: on five shards, in blocks of 64 customers, every file is the one the whole window scored and held
    in memory gives (as score and predict without a folder score it), written as before."""
    level, integer_ids = SHARDS_CASES[case]
    rows = pd.read_csv(shop)
    if integer_ids:  # k007 -> 7, r3 -> 1003; the guest keeps no id
        rows["customer_id"] = rows["customer_id"].str[1:].astype(float) + rows["customer_id"].str[0].eq("r") * 1000
        rows["customer_id"] = rows["customer_id"].astype("Int64")
    data = tmp_path / "shop.csv"
    rows.to_csv(data, index=False)
    products = tmp_path / "products.csv"
    named = {"product_id": ["p0", "p4", "p5"], "name": ["Tea", "Mugs", "Cups"], "category": ["tea", "ware", "ware"]}
    pd.DataFrame(named).to_csv(products, index=False)
    model_dir = predicted / "model"
    model, saved, _ = load_churn_value(model_dir)
    base = saved_data_config(saved["data"])
    cfg = dataclasses.replace(
        base, sequence=dataclasses.replace(base.sequence, shard_customers=50),
        actions=dataclasses.replace(base.actions, products=str(products), item_level=level),
    )  # fmt: skip
    for module in (run_files, shards):
        monkeypatch.setattr(module, "WRITE_ROWS", 64)
    views = []
    monkeypatch.setattr(shards, "shard_windows", lambda *a: views.extend(shard_windows(*a)) or views)
    written = custseq.score(model_dir, str(data), config=cfg, as_of=AS_OF, out=tmp_path / "sharded")
    assert len(views) == 5 and written.held_predictions is None  # 206 customers in 5 shards, nothing held

    held = tmp_path / "held"  # score_with_model's path without a folder, then written as predict writes
    proposer = load_item_proposer(model_dir / NEXT_EVENT_DIR)
    scoring_cfg = score_module._scoring_config(model, cfg, AS_OF)
    with work_folder("test") as tmp:
        window = WindowFolder(tmp)
        prepare_scoring_sequences(Tables.of(str(data)), scoring_cfg, tmp, vocab=model.vocab, with_features=True,
                                  btyd_fit=score_module._population_fit(model))  # fmt: skip
        scores, proposed = outputs.scores_and_items(model, window, proposer, scoring_cfg)
        scored = outputs.score_customers(
            scores, window, model, scoring_cfg, proposer, integer_ids=integer_ids, proposed=proposed
        )
        outputs.write_scored(RunFolder(held), scored, written.metrics, model, window, scoring_cfg)

    sharded = tmp_path / "sharded"
    files = ("predictions.parquet", "predictions.csv", "review.csv", "contacts.csv", "profit.json", "attention.json")
    for name in files:
        assert (sharded / name).read_bytes() == (held / name).read_bytes(), name
    assert pq.read_table(sharded / "embeddings.parquet").equals(pq.read_table(held / "embeddings.parquet"))
    assert written.metrics.actions == scored.actions and written.metrics.review_customers == len(scored.review)
    assert written.metrics.value_score == scored.value_score and written.metrics.p_alive == scored.p_alive
    p = written.predictions  # read back from the files
    assert p["customer_id"].tolist() == scored.predictions["customer_id"].tolist()
    assert p["customer_id"].is_monotonic_increasing and len(pd.read_csv(sharded / "contacts.csv")) > 0
    items = [item for plan in p["next_items"] for item in json.loads(plan)]
    if level == "item":
        assert {item["item"] for item in items} & {"p0", "p4"} and any(item.get("name") == "Tea" for item in items)
    else:
        assert items and all(item["level"] == "category" for item in items)
    assert written.prediction_columns(["segment"])["segment"].tolist() == p["segment"].tolist()


def test_score_takes_an_as_of_after_the_last_row_but_not_before_the_first(predicted, shop, tmp_path):
    rows = pd.read_csv(shop)
    last_day = dt.date.fromisoformat(rows["ts"].max())
    as_of = (last_day + dt.timedelta(days=40)).isoformat()  # the shop was quiet for 40 days
    out = tmp_path / "late"
    result, output = _invoke("score", str(shop), "--model", str(predicted / "model"), "--as-of", as_of, "--out",
                             str(out))  # fmt: skip
    assert result.exit_code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["as_of"] == as_of and metrics["customers_scored"] == rows["customer_id"].nunique() == 206
    early = ["score", str(shop), "--model", str(predicted / "model"), "--as-of", "2022-12-31", "--out", str(out)]
    result, output = _invoke(*early)
    assert result.exit_code == 2 and "as-of 2022-12-31 is before the first transaction (2023-01-01)" in output


def test_predict_with_an_as_of_after_the_last_row_says_where_training_ends(shop, tiny, tmp_path):
    last_day = dt.date.fromisoformat(pd.read_csv(shop)["ts"].max())
    as_of = (last_day + dt.timedelta(days=10)).isoformat()
    args = ["predict", str(shop), "--horizon", "60d", "--as-of", as_of, "--config", str(tiny), "--no-pretraining"]
    result, output = _invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, output
    assert f"  note: last row {last_day}, 10 days before as-of: training labels end there" in output.splitlines()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    latest = dt.date.fromisoformat(metrics["training_windows"][0])  # as-of of the latest training window
    assert metrics["as_of"] == as_of and latest + dt.timedelta(days=60) == last_day  # labels end with the last day


def test_rows_after_as_of_change_nothing(shop, tiny, tmp_path):
    rows = pd.read_csv(shop)
    future = rows["ts"] > AS_OF
    changed = rows.copy()
    changed.loc[future, "amount"] *= 7  # other amounts after the as-of date
    changed = changed.drop(changed[future].index[::3])  # some later rows gone
    newcomer = pd.DataFrame({"customer_id": ["zz"], "ts": ["2023-12-01"], "amount": [5.0], "product": ["p9"]})
    changed = pd.concat([changed, newcomer])
    cfg = load_config(tiny)
    a = custseq.predict(rows, horizon="60d", as_of=AS_OF, config=cfg)
    b = custseq.predict(changed, horizon="60d", as_of=AS_OF, config=cfg)
    pd.testing.assert_frame_equal(a, b)


def test_api_and_estimator(shop, tiny):
    from sklearn.base import clone

    cfg = load_config(tiny)
    rows = pd.read_csv(shop)
    est = custseq.ChurnValueEstimator(horizon="60d", as_of=AS_OF, config=cfg, seed=1, pretraining=False)
    assert clone(est).get_params() == est.get_params() and not hasattr(clone(est), "model_")
    with pytest.raises(Exception, match="not fitted"):
        est.predict(rows)
    ids = sorted(rows["customer_id"].dropna().unique())
    profiles = pd.DataFrame({"customer_id": ids, "region": [["north", "south"][i % 2] for i in range(len(ids))]})
    est.fit(rows, customers=profiles)
    assert est.as_of_ == AS_OF and est.metrics_.validation is not None
    assert "profile_region" in est.model_.tabular.categorical  # profile attributes reach the model
    p = est.predict(rows, as_of=AS_OF, customers=profiles)
    assert list(p.columns) == PREDICTION_COLUMNS and p["churn_probability"].between(0, 1).all()
    e = est.transform(rows, as_of=AS_OF, customers=profiles)
    assert e["customer_id"].tolist() == p["customer_id"].tolist() and e.shape[1] == 17
    assert not hasattr(clone(est), "model_")
    with pytest.raises(CustseqError, match=r"it needs customer profiles with region \(--customers"):
        est.predict(rows, as_of=AS_OF)  # the profiles forgotten: the message names the input, not profile_region


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.mark.parametrize(
    "content, message",
    [
        ("customer_id,ts\nk1,2023-01-01\n", "amount"),
        ("", "no rows"),
        ("customer_id,ts,amount\nk1,2023-01-01,abc\nk2,2023-02-01,xyz\n", "could not be parsed"),
    ],
    ids=["missing-column", "empty-file", "wrong-type"],
)
def test_bad_inputs_exit_2_with_a_clear_error(tmp_path, tiny, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result, output = _invoke("predict", str(path), "--config", str(tiny), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, output
    assert "error:" in output and message in output.lower() and "Traceback" not in output


def test_horizon_longer_than_history_is_carried_from_the_longest_that_fits(shop, tiny, tmp_path):
    args = ["predict", str(shop), "--horizon", "1y", "--config", str(tiny), "--no-pretraining"]
    result, output = _invoke(*args, "--out", str(tmp_path))
    assert result.exit_code == 0, output
    assert "no training window fits 365 days: training on" in output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    trained = metrics["model_choice"]["trained_horizon_days"]
    assert metrics["horizon_days"] == 365 and 7 <= trained < 365 and "backtest" not in metrics
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert predictions["clv_expected"].ge(0).all() and predictions["churn_probability"].between(0, 1).all()


def test_history_too_short_for_any_training_window_answers_with_btyd_alone(shop, tmp_path):
    out = tmp_path / "o"  # 35 days of history before the as-of date: no labelled window of even 7 days fits
    result, output = _invoke("predict", str(shop), "--horizon", "60d", "--as-of", "2023-02-05", "--out", str(out))
    assert result.exit_code == 0, output
    said = " ".join(output.split())
    assert "BG/NBD + Gamma-Gamma alone" in said and "no model to save" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert "no labelled window fits" in metrics["btyd_alone"] and metrics["training_windows"] == []
    assert not (out / "model").exists() and "model_choice" not in metrics
    p = pq.read_table(out / "predictions.parquet").to_pandas()
    rows = pd.read_csv(shop)
    assert len(p) == rows.loc[rows["ts"] <= "2023-02-05", "customer_id"].nunique()
    assert p["churn_probability"].between(0, 1).all() and (p["clv_expected"] >= 0).all()
    # no labels to calibrate an interval: P10 is 0 exactly where BG/NBD gives no purchase a 10% chance or more
    assert ((p["clv_p10"] == 0) == (p["churn_probability"] >= 0.1)).all() and p.loc[
        p["clv_p10"] != 0, "clv_p10"
    ].isna().all()
    html = (out / "report.html").read_text()
    assert "could not be drawn" not in html and "These are not custseq&#x27;s learned predictions" in html


RECALIBRATE_TOML = """
[model]
pretraining = false

[audit]
recalibrate_groups = true
min_group_size = 5
calibration_tolerance = 0.02
value_tolerance = 0.05

[report]
enabled = false
"""


@pytest.mark.slow  # a predict and a score of their own (the report's table is tested in tests/report)
def test_group_recalibration_is_saved_with_the_model_and_applied_by_score(shop, tiny, tmp_path):
    """Tolerances tight enough for the small shop's validation customers to have flagged groups."""
    config = tmp_path / "recalibrate.toml"
    config.write_text(tiny.read_text() + RECALIBRATE_TOML)
    out, scored = tmp_path / "out", tmp_path / "scored"
    common = ["--as-of", AS_OF, "--out"]
    result, output = _invoke("predict", str(shop), "--horizon", "60d", "--config", str(config), *common, str(out))
    assert result.exit_code == 0, output
    audit = json.loads((out / "audit.json").read_text())
    groups = audit["recalibration"]["groups"]
    assert groups and json.loads((out / "metrics.json").read_text())["audit"]["corrected_groups"] == len(groups)
    predictor = json.loads((out / "model" / "config.json").read_text())["predictor"]
    assert [(c["attribute"], c["group"]) for c in predictor["group_corrections"]] == [
        (g["attribute"], g["group"]) for g in groups
    ]
    result, output = _invoke("score", str(shop), "--model", str(out / "model"), *common, str(scored))
    assert result.exit_code == 0, output
    mine = pq.read_table(out / "predictions.parquet").to_pandas()
    again = pq.read_table(scored / "predictions.parquet").to_pandas()
    for column in ("churn_probability", "clv_expected", "clv_p90"):
        assert np.array_equal(again[column], mine[column]), column  # the same corrections, to the bit


def test_score_refuses_data_without_the_models_fields(predicted, tmp_path):
    data = tmp_path / "no_product.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "ts": ["2023-01-01", "2023-02-01"], "amount": [1.0, 2.0]}).to_csv(
        data, index=False
    )
    result, output = _invoke("score", str(data), "--model", str(predicted / "model"), "--out", str(tmp_path / "s"))
    assert result.exit_code == 2 and "product" in output


def test_evaluate_compares_custseq_with_baselines(shop, tiny, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny), "--seeds", "2",
            "--methods", "custseq,last-period,logistic,btyd,pareto-nbd,xgboost,cohort-smoothing",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "evaluation.json").read_text())
    test_as_of = (dt.date.fromisoformat(AS_OF) - dt.timedelta(days=60)).isoformat()
    assert report["as_of"] == test_as_of and report["seeds"] == [0, 1]
    per_customer = {"custseq", "last-period", "logistic", "btyd", "pareto-nbd", "xgboost"}
    assert set(report["summary"]) == per_customer | {"cohort-smoothing"}
    for method in per_customer:
        runs = report["per_seed"][method]
        assert len(runs) == 2 and all(0 <= r["churn_auc"] <= 1 and r["cohort_wape"] >= 0 for r in runs), method
    assert report["summary"]["cohort-smoothing"]["cohort_wape"]["mean"] >= 0
    deterministic = report["per_seed"]["logistic"]
    assert deterministic[0]["churn_auc"] == deterministic[1]["churn_auc"]
    assert set(report["comparisons"]) == per_customer - {"custseq"}
    assert 0 <= report["comparisons"]["logistic"]["auc_bootstrap"]["p_value"] <= 1
    assert "| custseq |" in (out / "evaluation.md").read_text()
    test = pq.read_table(out / "test_predictions.parquet").to_pandas()  # seed 0's per-customer predictions
    assert len(test) == report["details"]["test_customers"] and test["customer_id"].is_unique
    assert {f"{m}:churn_probability" for m in per_customer} | {f"{m}:clv_expected" for m in per_customer} <= set(test)
    for method in ("custseq", "logistic"):
        auc = roc_auc_score(test["churned"], test[f"{method}:churn_probability"])
        assert auc == pytest.approx(report["per_seed"][method][0]["churn_auc"]), method
    assert report["details"]["tables"]["transactions"]["rows_in"] == len(pd.read_csv(shop))
    html = (out / "report.html").read_text()  # evaluate's report: the back-test table and every method's curves
    assert "could not be drawn" not in html and "pareto-nbd" in html and "Rows per table" in html


def test_evaluate_refuses_an_unknown_method(shop, tiny, tmp_path):
    result, output = _invoke("evaluate", str(shop), "--methods", "custseq,xgb", "--out", str(tmp_path))
    assert result.exit_code == 2 and "unknown method" in output


def test_evaluate_customer_split_with_networks_ablation_and_label_fraction(shop, tiny, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny), "--seeds", "1",
            "--protocol", "customer-split", "--methods", "custseq,hard-sharing,lstm,logistic,emb+lightgbm",
            "--ablations", "no-tabular", "--label-fractions", "0.5,1", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "evaluation.json").read_text())
    assert report["protocol"] == "customer-split" and not report["skipped"]
    expected = {"custseq", "hard-sharing", "lstm", "logistic", "emb+lightgbm", "custseq[no-tabular]"}
    assert set(report["summary"]) == expected | {f"{m}@50%" for m in expected}
    # the test rows are the 15% test customers of the latest labelled window
    n_test = report["details"]["test_customers"]
    assert 0 < n_test < 0.3 * report["details"]["training_windows"][0]
    for method, s in report["summary"].items():
        assert 0 <= s["churn_f1"]["mean"] <= 1 and -1 <= s["composite"]["mean"] <= 1, method
    assert report["comparisons"]["logistic@50%"]["reference"] == "custseq@50%"
    assert report["comparisons"]["lstm"]["reference"] == "custseq"


def test_evaluate_transfer_from_another_dataset(shop, tiny, tmp_path):
    other = tmp_path / "other.csv"
    rows = _shop_rows(seed=11)
    rows["product"] = "q" + rows["product"]  # another catalogue: the vocabularies differ
    rows.to_csv(other, index=False)
    out = tmp_path / "eval"
    args = ["evaluate", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny), "--seeds", "1",
            "--methods", "custseq", "--transfer-from", str(other), "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["summary"]) == {"custseq", "custseq[transfer]", "custseq[no-pretraining]"}


def test_evaluate_refuses_an_unknown_protocol_or_ablation(shop, tmp_path):
    result, output = _invoke("evaluate", str(shop), "--protocol", "random", "--out", str(tmp_path))
    assert result.exit_code == 2 and "protocol" in output
    result, output = _invoke("evaluate", str(shop), "--ablations", "no-brain", "--out", str(tmp_path))
    assert result.exit_code == 2 and "unknown ablation" in output
    result, output = _invoke("evaluate", str(shop), "--label-fractions", "half", "--out", str(tmp_path))
    assert result.exit_code == 2 and "label-fractions" in output


def test_evaluate_carries_custseq_when_no_training_window_fits_the_horizon(shop, tiny, tmp_path):
    out = tmp_path / "eval"  # 240 days before the as-of date leave a 17-day training window, no 240-day one
    args = ["evaluate", str(shop), "--horizon", "240d", "--as-of", AS_OF, "--config", str(tiny), "--seeds", "1",
            "--methods", "custseq,logistic,btyd,pareto-nbd,last-period", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "custseq trained on 17 days and carried" in " ".join(result.output.split())
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["summary"]) == {"custseq", "btyd", "pareto-nbd", "last-period"}
    assert set(report["skipped"]) == {"logistic"} and "custseq (carried" in report["skipped"]["logistic"]
    assert report["details"]["trained_horizon_days"] == 17 and "BG/NBD" in report["details"]["carried_by"]
    assert report["horizon_days"] == 240 and 0.5 < report["summary"]["custseq"]["churn_auc"]["mean"] <= 1
    # no validation rows of the test horizon to pick a threshold: F1 is NaN, which strict JSON writes as null
    assert report["summary"]["btyd"]["churn_f1"]["mean"] is None
    md = (out / "evaluation.md").read_text()
    assert "custseq trained on 17 days" in md
    # one seed: no spread and no t-test, said in words rather than "± 0.000" and "p=nan"
    assert "1 seed: no spread" in md and "±" not in md and "(nan)" not in md and "(1 seed: no t-test)" in md
    said = " ".join(result.output.split())
    assert "1 seed: no spread and no paired t-test" in said and "p=nan" not in said


def test_evaluate_without_any_training_window_runs_the_label_free_methods(shop, tiny, tmp_path):
    out = tmp_path / "eval"  # 270 days before the as-of date leave 17 days of history: no training window at all
    args = ["evaluate", str(shop), "--horizon", "270d", "--as-of", AS_OF, "--config", str(tiny), "--seeds", "1",
            "--methods", "custseq,logistic,btyd,last-period", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["summary"]) == {"btyd", "last-period"} and "trained_horizon_days" not in report["details"]
    assert set(report["skipped"]) == {"custseq", "logistic"} and "label-free" in report["skipped"]["custseq"]


def test_a_customer_scores_the_same_alone_as_in_the_whole_batch(predicted, shop):
    """score reads a batch with the model's own BG/NBD + Gamma-Gamma fit (saved with the predictor): two customers
    score, and get the numbers they get among everyone, rather than a refit on two customers (which fails)."""
    rows = pd.read_csv(shop)
    pair = ["k007", "r1"]  # a regular and a lapsed regular
    alone = custseq.score(predicted / "model", rows[rows["customer_id"].isin(pair)], as_of=AS_OF).predictions
    everyone = pq.read_table(predicted / "predictions.parquet").to_pandas().set_index("customer_id").loc[pair]
    assert alone["customer_id"].tolist() == pair
    for column in ("churn_probability", "clv_expected", "clv_p10", "clv_p90", "p_alive"):
        assert np.allclose(alone[column], everyone[column], rtol=1e-6, atol=1e-9), column
    predictor = json.loads((predicted / "model" / "config.json").read_text())["predictor"]
    assert set(predictor["btyd_fit"]["bgnbd"]) == {"r", "alpha", "a", "b"}
