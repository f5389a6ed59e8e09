"""End-to-end: the review loop closed — decisions kept by `plan`, measured against outcomes by a later `predict`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows
from typer.testing import CliRunner

from custseq.cli import app
from custseq.scoring.decisions import LABEL_COLUMNS
from custseq.scoring.review_outcomes import NOT_CALIBRATED, read_decision_history, review_outcomes

pytestmark = pytest.mark.slow  # one predict of its own (about 40 s on two cores)
runner = CliRunner()
PAST = [("k001", "btyd"), ("k002", "override"), ("k003", "custseq"), ("k004", "btyd")]  # decided at 2023-07-01


def _past_decisions(as_of: str, horizon: int, decided: list[tuple[str, str]]) -> pd.DataFrame:
    """A decisions.csv as plan writes it: custseq says 0.3 / 40, BG/NBD 0.8 / 5, the override 0.6."""
    rows = []
    for customer, decision in decided:
        reviewed = {"custseq": (0.3, 40.0), "btyd": (0.8, 5.0), "override": (0.6, 40.0)}[decision]
        override = (0.6, np.nan) if decision == "override" else (np.nan, np.nan)
        rows.append((as_of, horizon, customer, decision, 0.3, 40.0, 0.8, 5.0, *override, *reviewed))
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))


def _outcome(shop: pd.DataFrame, customer: str, as_of: str, horizon: int) -> tuple[float, float]:
    """(churned, value) in [as_of + 1 day, as_of + horizon], by hand on the shop's rows (every amount positive)."""
    start = dt.date.fromisoformat(as_of) + dt.timedelta(days=1)
    end = dt.date.fromisoformat(as_of) + dt.timedelta(days=horizon)
    rows = shop[(shop["customer_id"] == customer) & (shop["ts"] >= start) & (shop["ts"] <= end)]
    return float(rows.empty), float(rows["amount"].sum())


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> tuple[Path, pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("review-loop")
    shop = _shop_rows()
    shop.to_csv(folder / "shop.csv", index=False)
    (folder / "tiny.toml").write_text(TINY_TOML)
    _past_decisions("2023-07-01", 60, PAST).to_csv(folder / "july.csv", index=False)  # window over by AS_OF
    _past_decisions("2023-09-01", 60, [("k005", "btyd")]).to_csv(folder / "september.csv", index=False)  # not yet
    out = folder / "out"
    args = ["predict", str(folder / "shop.csv"), "--horizon", "60d", "--as-of", AS_OF, "--config",
            str(folder / "tiny.toml"), "--no-pretraining", "--decisions-history", str(folder / "july.csv"),
            "--decisions-history", str(folder / "september.csv"), "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, shop, folder


def test_predict_measures_past_decisions_against_what_happened(loop):
    out, shop, _ = loop
    record = json.loads((out / "metrics.json").read_text())["review_outcomes"]
    assert (record["decisions"], record["measured"], record["pending"], record["before_data"]) == (5, 4, 1, 0)
    assert record["by_decision"] == {"custseq": 1, "btyd": 2, "override": 1}
    outcomes = np.array([_outcome(shop, c, "2023-07-01", 60) for c, _ in PAST])
    churned, value = outcomes[:, 0], outcomes[:, 1]
    reviewed = np.array([{"custseq": 0.3, "btyd": 0.8, "override": 0.6}[d] for _, d in PAST])
    assert record["errors"]["custseq"]["churn_brier"] == pytest.approx(np.mean((0.3 - churned) ** 2))
    assert record["errors"]["btyd"]["churn_brier"] == pytest.approx(np.mean((0.8 - churned) ** 2))
    assert record["errors"]["reviewers"]["churn_brier"] == pytest.approx(np.mean((reviewed - churned) ** 2))
    assert record["errors"]["btyd"]["value_mae"] == pytest.approx(np.mean(np.abs(5.0 - value)))
    changed = reviewed != 0.3
    assert record["overruled"] == 3
    assert record["reviewers_closer"] == int((np.abs(reviewed - churned) < np.abs(0.3 - churned))[changed].sum())
    assert record["calibration"] == NOT_CALIBRATED
    html = (out / "report.html").read_text()
    assert "Past decisions against outcomes" in html and "not fed into the churn calibration" in html


def test_plan_keeps_decisions_as_labels_that_a_later_run_can_measure(loop, tmp_path):
    out, shop, _ = loop
    review = pd.read_csv(out / "review.csv", dtype={"customer_id": str, "decision": object})
    assert len(review) >= 2, "the shop run lists customers for review"
    review.loc[0, "decision"] = "btyd"
    review.loc[1, ["decision", "override_churn_probability"]] = ["override", 0.99]
    review.to_csv(tmp_path / "review.csv", index=False)
    result = runner.invoke(app, ["plan", str(out), "--decisions", str(tmp_path / "review.csv"), "--out",
                                 str(tmp_path / "reviewed")])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(tmp_path / "reviewed" / "decisions.csv", dtype={"customer_id": str})
    assert list(labels.columns) == list(LABEL_COLUMNS) and len(labels) == 2
    assert (labels["as_of"] == AS_OF).all() and (labels["horizon_days"] == 60).all()
    first, second = labels.iloc[0], labels.iloc[1]
    assert first["custseq_churn_probability"] == pytest.approx(review.loc[0, "churn_probability"])
    assert first["reviewed_churn_probability"] == pytest.approx(review.loc[0, "btyd_churn_probability"])
    assert second["override_churn_probability"] == 0.99 and second["reviewed_churn_probability"] == 0.99
    assert second["reviewed_clv_expected"] == pytest.approx(review.loc[1, "clv_expected"])  # no value override
    # once the 60 days after AS_OF are over, these rows are labels: measured on the shop's spend
    history = read_decision_history([tmp_path / "reviewed" / "decisions.csv"])
    spend = shop[["customer_id", "ts", "amount"]]
    later = review_outcomes(history, spend, dt.date(2023, 12, 31), dt.date(2023, 1, 1))
    assert later is not None and (later.measured, later.pending) == (2, 0)
    sooner = review_outcomes(history, spend, dt.date(2023, 12, 1), dt.date(2023, 1, 1))
    assert sooner is not None and (sooner.measured, sooner.pending) == (0, 2)  # 2023-12-14 not reached yet
