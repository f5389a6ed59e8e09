"""Every baseline fits on training windows and predicts a window, on a small prepared shop."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import custseq
from custseq.baselines.base import WindowTables
from custseq.baselines.simple import Btyd, LastPeriod, ParetoNbd
from custseq.baselines.tabular import LightGBM, LogisticRidge, RandomForest, XGBoost
from custseq.metrics import roc_auc


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """300 customers whose buying rate varies 10x, so churn and value are predictable from history."""
    rng = np.random.default_rng(11)
    rows = []
    for c in range(300):
        day, gap, end = int(rng.integers(0, 30)), float(rng.choice([7, 25, 70])), int(rng.integers(150, 420))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            rows.append({"customer_id": f"b{c:03d}", "ts": ts, "amount": round(float(rng.gamma(2, 12)), 2)})
            day += max(1, int(rng.exponential(gap)))
    result = custseq.prepare(pd.DataFrame(rows), out=tmp_path_factory.mktemp("bl"), as_of="2023-10-31", horizon="60d")
    h = result.summary.horizon_days
    train = [WindowTables.read(result.window(w), h) for w in result.plan.training]
    return train, WindowTables.read(result.window(result.plan.scoring), h)


BASELINES = {
    "last-period": LastPeriod, "btyd": Btyd, "logistic-ridge": LogisticRidge, "random-forest": RandomForest,
    "lightgbm-tweedie": LightGBM, "lightgbm-mae": lambda: LightGBM(value_objective="l1"),
    "lightgbm-p50": lambda: LightGBM(value_objective="quantile"), "pareto-nbd": ParetoNbd, "xgboost": XGBoost,
}  # fmt: skip


@pytest.mark.parametrize("make", BASELINES.values(), ids=BASELINES.keys())
def test_every_baseline_fits_and_predicts(windows, make):
    train, scoring = windows
    model = make().fit(train)
    p = model.predict(scoring)
    assert p.customer_ids == scoring.customer_ids
    assert np.all((p.churn_probability >= 0) & (p.churn_probability <= 1))
    assert np.all(np.isfinite(p.value)) and np.all(p.value >= 0)
    churned, _ = scoring.label_arrays()
    assert roc_auc(churned, p.churn_probability) > 0.6, model.name  # the planted signal is found


def test_last_period_by_hand():
    features = pa.table({"customer_id": ["a", "b", "c"], "purchase_days_last_h": [0, 2, 1],
                         "spend_last_h": [0.0, 50.0, -10.0]})  # fmt: skip
    p = LastPeriod().predict(WindowTables(features, None, 90))
    assert p.churn_probability.tolist() == [1.0, 0.0, 0.0] and p.value.tolist() == [0.0, 50.0, 0.0]


def test_unknown_value_objective_is_refused():
    with pytest.raises(ValueError, match="value_objective"):
        LightGBM(value_objective="poisson")
