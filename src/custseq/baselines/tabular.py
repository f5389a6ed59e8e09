"""Supervised baselines on the tabular features (RFM, behaviour): logistic/ridge, LightGBM, random forest.

All are trained on the rows of every training window and read the features through custseq's own
:mod:`custseq.features.matrix` (signed log1p, standardisation and missing indicators fitted on the training
windows; categorical profile columns are left out). Settings are fixed, not tuned on any test window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from custseq.baselines.base import BaselinePredictions, WindowTables
from custseq.features.matrix import TabularSpec, fit_tabular, transform_tabular

LGBM_DEFAULTS = {
    "n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "subsample": 0.8,
    "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1,
}  # fmt: skip
VALUE_OBJECTIVES = ("tweedie", "l1", "quantile")


@dataclass
class _TabularData:
    spec: TabularSpec
    x: np.ndarray
    churned: np.ndarray
    value: np.ndarray


def _training_data(windows: Sequence[WindowTables]) -> _TabularData:
    spec = fit_tabular([w.features for w in windows])
    x = np.concatenate([transform_tabular(spec, w.features).values for w in windows])
    labels = [w.label_arrays() for w in windows]
    return _TabularData(spec, x, np.concatenate([c for c, _ in labels]), np.concatenate([v for _, v in labels]))


def _inputs(spec: TabularSpec, table: pa.Table) -> np.ndarray:
    return transform_tabular(spec, table).values


@dataclass
class LogisticRidge:
    """Logistic regression for churn; ridge regression on log1p(value⁺) for value.

    The value prediction is expm1 of the ridge output clipped to the training targets' range, so a customer
    far outside the training features' range cannot get an absurd value.
    """

    seed: int = 0
    name: str = "logistic regression"
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def fit(self, windows: Sequence[WindowTables]) -> LogisticRidge:
        from sklearn.linear_model import LogisticRegression, Ridge

        d = _training_data(windows)
        target = np.log1p(np.clip(d.value, 0, None))
        self._state = {
            "spec": d.spec,
            "churn": LogisticRegression(max_iter=2000).fit(d.x, d.churned),
            "value": Ridge().fit(d.x, target),
            "max_log": float(target.max(initial=0.0)),
        }
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        s = self._state
        x = _inputs(s["spec"], window.features)
        log_value = np.clip(s["value"].predict(x), 0, s["max_log"])
        return BaselinePredictions(window.customer_ids, s["churn"].predict_proba(x)[:, 1], np.expm1(log_value))


@dataclass
class LightGBM:
    """LightGBM classifier for churn; a regressor on value⁺ with a Tweedie, MAE (l1) or P50 quantile loss."""

    value_objective: str = "tweedie"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=lambda: dict(LGBM_DEFAULTS))
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.value_objective not in VALUE_OBJECTIVES:
            raise ValueError(f"value_objective must be one of {VALUE_OBJECTIVES}, got {self.value_objective!r}")

    @property
    def name(self) -> str:
        return f"LightGBM ({self.value_objective})"

    def fit(self, windows: Sequence[WindowTables]) -> LightGBM:
        from lightgbm import LGBMClassifier, LGBMRegressor

        d = _training_data(windows)
        params = {**self.params, "random_state": self.seed}
        extra = {"alpha": 0.5} if self.value_objective == "quantile" else {}
        self._state = {
            "spec": d.spec,
            "churn": LGBMClassifier(**params).fit(d.x, d.churned),
            "value": LGBMRegressor(objective=self.value_objective, **extra, **params).fit(
                d.x, np.clip(d.value, 0, None)
            ),
        }
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        s = self._state
        x = _inputs(s["spec"], window.features)
        value = np.clip(s["value"].predict(x), 0, None)
        return BaselinePredictions(window.customer_ids, s["churn"].predict_proba(x)[:, 1], value)


@dataclass
class RandomForest:
    """Random forests: a classifier for churn and a regressor on log1p(value⁺)."""

    seed: int = 0
    n_estimators: int = 300
    name: str = "random forest"
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def fit(self, windows: Sequence[WindowTables]) -> RandomForest:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        d = _training_data(windows)
        common = {"n_estimators": self.n_estimators, "min_samples_leaf": 20, "n_jobs": -1, "random_state": self.seed}
        self._state = {
            "spec": d.spec,
            "churn": RandomForestClassifier(**common).fit(d.x, d.churned),
            "value": RandomForestRegressor(**common).fit(d.x, np.log1p(np.clip(d.value, 0, None))),
        }
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        s = self._state
        x = _inputs(s["spec"], window.features)
        value = np.expm1(np.clip(s["value"].predict(x), 0, None))
        return BaselinePredictions(window.customer_ids, s["churn"].predict_proba(x)[:, 1], value)
