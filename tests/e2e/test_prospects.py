"""End-to-end: people with behaviour events and no purchase (prospects) are counted, and scored by a model of
their own into prospects.csv by predict and by score; [prospects] mode = "exclude" only counts them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from custseq.cli import app

runner = CliRunner()
AS_OF = "2023-10-15"
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
epochs = 1
batch_size = 64

[profit]
currency = "EUR"
"""


def _day(d: int) -> dt.date:
    return dt.date(2023, 1, 1) + dt.timedelta(days=int(d))


def _shop(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """150 customers, and 600 prospects: half browse intensely for 3 weeks and then buy, half look once."""
    rng = np.random.default_rng(seed)
    tx, ev = [], []
    for c in range(150):
        day, gap = int(rng.integers(0, 60)), float(rng.choice([10, 30]))
        while day < 360:
            tx.append((f"k{c:03d}", _day(day), round(float(rng.gamma(2.0, 15.0)), 2)))
            ev.append((f"k{c:03d}", _day(max(day - 1, 0)), "page_view"))
            day += max(1, int(rng.exponential(gap)))
    for v in range(600):
        start, keen = int(rng.integers(0, 330)), v % 2 == 0
        if keen:
            ev += [(f"v{v:03d}", _day(start + d), "page_view") for d in sorted(rng.integers(0, 21, 8))]
            ev.append((f"v{v:03d}", _day(start + 18), "add_to_cart"))
            tx.append((f"v{v:03d}", _day(start + 21 + int(rng.integers(0, 20))), round(float(rng.gamma(2.0, 20.0)), 2)))
        else:
            ev.append((f"v{v:03d}", _day(start), "page_view"))
    transactions = pd.DataFrame(tx, columns=["customer_id", "ts", "amount"])
    return transactions, pd.DataFrame(ev, columns=["customer_id", "ts", "event"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("prospects")
    tx, ev = _shop()
    tx.to_csv(folder / "tx.csv", index=False)
    ev.to_csv(folder / "events.csv", index=False)
    (folder / "tiny.toml").write_text(TINY_TOML)
    return folder / "tx.csv", folder / "events.csv", folder / "tiny.toml"


def _prospects_at_as_of(tx: Path, ev: Path) -> set[str]:
    t, e = pd.read_csv(tx), pd.read_csv(ev)
    buyers = set(t.loc[t["ts"] <= AS_OF, "customer_id"])
    return set(e.loc[e["ts"] <= AS_OF, "customer_id"]) - buyers


def _predict(shop, out: Path, *extra: str) -> dict:
    tx, ev, tiny = shop
    args = ["predict", str(tx), "--events", str(ev), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny)]
    result = runner.invoke(app, [*args, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def predicted(shop, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    _predict(shop, out)
    return out


def test_prospects_are_counted_scored_and_kept_out_of_the_customers(predicted, shop):
    metrics = json.loads((predicted / "metrics.json").read_text())["prospects"]
    expected = _prospects_at_as_of(shop[0], shop[1])
    assert metrics["mode"] == "score" and metrics["prospects"] == len(expected) == metrics["scored"]
    scored = pd.read_csv(predicted / "prospects.csv")
    assert set(scored["customer_id"]) == expected and scored["customer_id"].is_unique
    assert scored["first_purchase_probability"].between(0, 1).all()
    assert np.allclose(scored["first_purchase_probability"] + scored["churn_probability"], 1.0, atol=1e-3)
    assert (scored["expected_value"] >= 0).all()
    assert scored["first_purchase_probability"].is_monotonic_decreasing
    customers = set(pd.read_csv(predicted / "predictions.csv")["customer_id"])
    assert not customers & expected  # prospects are not in the customers' predictions


def test_the_planted_browsing_signal_is_learnt(predicted):
    v = json.loads((predicted / "metrics.json").read_text())["prospects"]["validation"]
    assert v["prospects"] > 100 and 0 < v["first_purchase_rate"] < 1
    # keen browsers (8 views and a cart in 3 weeks) buy within about 40 days; one-look visitors never do
    assert v["churn_auc"] > 0.85
    assert v["churn_auc"] >= v["recency_auc"] - 0.02


def test_score_applies_the_saved_prospects_model(predicted, shop, tmp_path):
    tx, ev, _ = shop
    out = tmp_path / "scored"
    args = ["score", str(tx), "--events", str(ev), "--model", str(predicted / "model"), "--as-of", AS_OF]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    a = pd.read_csv(predicted / "prospects.csv").set_index("customer_id").sort_index()
    b = pd.read_csv(out / "prospects.csv").set_index("customer_id").sort_index()
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((out / "metrics.json").read_text())["prospects"]["scored"] == len(a)


def test_exclude_only_counts_them(shop, tmp_path):
    config = tmp_path / "exclude.toml"
    config.write_text(shop[2].read_text() + '\n[prospects]\nmode = "exclude"\n')
    out = tmp_path / "out"
    metrics = _predict((shop[0], shop[1], config), out)["prospects"]
    assert metrics["mode"] == "exclude" and metrics["scored"] == 0
    assert metrics["prospects"] == len(_prospects_at_as_of(shop[0], shop[1]))
    assert "exclude" in metrics["not_scored_because"] and not (out / "prospects.csv").exists()
