"""XGBoost, LightGBM value quantiles and the cohort-grouped choice of boosting rounds, on a small prepared shop."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

import custseq
from custseq.baselines.base import WindowTables
from custseq.baselines.cohort import signup_cohorts
from custseq.baselines.tabular import LightGBM, XGBoost
from custseq.config import BaselineConfig
from custseq.errors import ConfigError
from custseq.metrics import roc_auc

# Small enough for seconds on a shared machine; the library defaults are measured in the report.
FAST = BaselineConfig(lgbm_n_estimators=40, xgb_n_estimators=40, cv_max_rounds=120, cv_early_stopping_rounds=10,
                      n_jobs=1)  # fmt: skip


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """300 customers who sign up over five months and buy at rates 10x apart: churn is predictable."""
    rng = np.random.default_rng(12)
    rows = []
    for c in range(300):
        day, gap, end = int(rng.integers(0, 150)), float(rng.choice([7, 25, 70])), int(rng.integers(200, 420))
        while day < end:
            ts = dt.date(2023, 1, 1) + dt.timedelta(days=day)
            rows.append({"customer_id": f"x{c:03d}", "ts": ts, "amount": round(float(rng.gamma(2, 12)), 2)})
            day += max(1, int(rng.exponential(gap)))
    result = custseq.prepare(pd.DataFrame(rows), out=tmp_path_factory.mktemp("tx"), as_of="2023-10-31", horizon="60d")
    h = result.summary.horizon_days
    train = [WindowTables.read(result.window(w), h) for w in result.plan.training]
    return train, WindowTables.read(result.window(result.plan.scoring), h)


def n_cohorts(windows: list[WindowTables]) -> int:
    return len(np.unique(np.concatenate([signup_cohorts(w.features) for w in windows])))


MODELS = {
    "xgboost": lambda cfg: XGBoost(config=cfg),
    "lightgbm-p50": lambda cfg: LightGBM(value_objective="quantile", quantile_alpha=0.5, config=cfg),
    "lightgbm-p90": lambda cfg: LightGBM(value_objective="quantile", quantile_alpha=0.9, config=cfg),
    "lightgbm-tweedie": lambda cfg: LightGBM(config=cfg),
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_new_baselines_fit_predict_and_find_the_signal_with_cohort_cv(windows, make):
    train, scoring = windows
    model = make(FAST).fit(train)
    p = model.predict(scoring)
    assert p.customer_ids == scoring.customer_ids
    assert np.all((p.churn_probability >= 0) & (p.churn_probability <= 1))
    assert np.all(np.isfinite(p.value)) and np.all(p.value >= 0)
    churned, _ = scoring.label_arrays()
    assert roc_auc(churned, p.churn_probability) > 0.6, model.name
    assert model.rounds_.cohort_cv, model.rounds_.reason


def test_cohort_cv_refits_with_the_mean_best_round_of_its_folds(windows):
    train, _ = windows
    assert n_cohorts(train) >= FAST.cv_folds  # the fixture spreads signups over five months
    rounds = LightGBM(config=FAST).fit(train).rounds_
    assert len(rounds.churn_per_fold) == len(rounds.value_per_fold) == FAST.cv_folds
    assert all(1 <= r <= FAST.cv_max_rounds for r in (*rounds.churn_per_fold, *rounds.value_per_fold))
    assert rounds.churn == max(1, round(np.mean(rounds.churn_per_fold)))
    assert rounds.value == max(1, round(np.mean(rounds.value_per_fold)))


@pytest.mark.parametrize("make", [LightGBM, XGBoost], ids=["lightgbm", "xgboost"])
def test_too_few_cohorts_fall_back_to_the_fixed_rounds_and_say_so(windows, make):
    train, _ = windows
    folds = n_cohorts(train) + 1
    model = make(config=BaselineConfig(**{**vars(FAST), "cv_folds": folds})).fit(train)
    fixed = FAST.lgbm_n_estimators if make is LightGBM else FAST.xgb_n_estimators
    assert not model.rounds_.cohort_cv
    assert (model.rounds_.churn, model.rounds_.value) == (fixed, fixed)
    assert f"fewer than cv_folds={folds}" in model.rounds_.reason


def test_cohort_cv_off_uses_the_configured_rounds(windows):
    train, _ = windows
    cfg = BaselineConfig(**{**vars(FAST), "cohort_cv": False, "lgbm_n_estimators": 7})
    model = LightGBM(config=cfg).fit(train)
    assert model.rounds_.reason == "cohort_cv is off: fixed 7 rounds"
    assert model._state["churn"].booster_.num_trees() == 7


def test_xgboost_is_deterministic_for_a_seed(windows):
    train, scoring = windows
    cfg = BaselineConfig(**{**vars(FAST), "cohort_cv": False})
    first, second = (XGBoost(seed=3, config=cfg).fit(train).predict(scoring) for _ in range(2))
    np.testing.assert_array_equal(first.churn_probability, second.churn_probability)
    np.testing.assert_array_equal(first.value, second.value)


def test_p90_predicts_more_value_than_p50(windows):
    train, scoring = windows
    cfg = BaselineConfig(**{**vars(FAST), "cohort_cv": False})
    p50, p90 = (LightGBM(value_objective="quantile", quantile_alpha=a, config=cfg).fit(train).predict(scoring).value
                for a in (0.5, 0.9))  # fmt: skip
    assert p90.mean() > 1.5 * p50.mean()
    _, value = scoring.label_arrays()
    assert np.mean(value <= p90) > np.mean(value <= p50)  # more of the actual values lie under P90


def test_names_say_which_quantile():
    assert LightGBM(value_objective="quantile").name == "LightGBM (quantile P50)"
    assert LightGBM(value_objective="quantile", quantile_alpha=0.9).name == "LightGBM (quantile P90)"
    assert LightGBM().name == "LightGBM (tweedie)" and XGBoost().name == "XGBoost (tweedie)"


def test_quantile_alpha_is_checked():
    with pytest.raises(ConfigError, match=r"quantile_alpha must be in \(0, 1\), got 1.2"):
        LightGBM(value_objective="quantile", quantile_alpha=1.2)
    message = "quantile_alpha=0.9 needs value_objective='quantile', got 'tweedie'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        LightGBM(quantile_alpha=0.9)
