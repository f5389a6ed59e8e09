"""Supervised baselines on the tabular features (RFM, behaviour): logistic/ridge, LightGBM, XGBoost, random forest.

All are trained on the rows of every training window and read the features through custseq's own
:mod:`custseq.features.matrix` (signed log1p, standardisation and missing indicators fitted on the training
windows; categorical profile columns are left out). Settings come from :class:`custseq.config.BaselineConfig`
and are fixed, not tuned on any test window. The gradient-boosting models choose their number of rounds by
cross-validation grouped by signup cohort (``cohort_cv``): a fold holds out whole cohorts, so early stopping
measures how the model carries over to customers who joined at another time, as the scored customers may have.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from custseq.baselines.base import BaselinePredictions, WindowTables
from custseq.baselines.boosted import BoostedHead, BoostedInputs, early_stopping_mask, fit_boosted
from custseq.baselines.cohort import signup_cohorts
from custseq.config import BaselineConfig, PredictorConfig
from custseq.errors import ConfigError
from custseq.features.matrix import TabularSpec, fit_tabular, transform_tabular

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class BoostingRounds:
    """How many boosting rounds the churn and value models were refitted with, and how that was chosen."""

    churn: int
    value: int
    cohort_cv: bool  # False: the fixed number of rounds of the config (cohort CV off, or too few cohorts)
    reason: str
    churn_per_fold: tuple[int, ...] = ()  # best round on each fold's held-out cohorts
    value_per_fold: tuple[int, ...] = ()


@dataclass(frozen=True)
class _BoostingRecipe:
    """What differs between LightGBM and XGBoost: how to build each model and how to early-stop it."""

    churn_model: Callable[[int], Any]  # rounds -> an unfitted classifier
    value_model: Callable[[int], Any]  # rounds -> an unfitted regressor
    best_round: Callable[[Any, tuple[np.ndarray, ...], tuple[np.ndarray, ...]], int]  # model, (x, y) fit, held out
    fixed_rounds: int


def _fit_boosting(
    recipe: _BoostingRecipe, windows: Sequence[WindowTables], cfg: BaselineConfig
) -> tuple[dict[str, Any], BoostingRounds]:
    d = _training_data(windows)
    value = np.clip(d.value, 0, None)
    rounds = _choose_rounds(recipe, windows, d.x, d.churned, value, cfg)
    state = {
        "spec": d.spec,
        "churn": recipe.churn_model(rounds.churn).fit(d.x, d.churned),
        "value": recipe.value_model(rounds.value).fit(d.x, value),
    }
    return state, rounds


def _choose_rounds(
    recipe: _BoostingRecipe, windows: Sequence[WindowTables], x: np.ndarray, churned: np.ndarray,
    value: np.ndarray, cfg: BaselineConfig,
) -> BoostingRounds:  # fmt: skip
    fixed = recipe.fixed_rounds
    if not cfg.cohort_cv:
        return BoostingRounds(fixed, fixed, False, f"cohort_cv is off: fixed {fixed} rounds")
    cohorts = np.concatenate([signup_cohorts(w.features, cfg.cohort_period) for w in windows])
    n_cohorts = len(np.unique(cohorts))
    if n_cohorts < cfg.cv_folds:
        reason = f"{n_cohorts} signup {cfg.cohort_period}(s), fewer than cv_folds={cfg.cv_folds}: fixed {fixed} rounds"
        log.info("cohort CV falls back: %s", reason)
        return BoostingRounds(fixed, fixed, False, reason)
    churn, churn_folds = _cohort_cv_rounds(recipe.churn_model, recipe.best_round, x, churned, cohorts, cfg)
    value_rounds, value_folds = _cohort_cv_rounds(recipe.value_model, recipe.best_round, x, value, cohorts, cfg)
    reason = f"cohort CV: {cfg.cv_folds} folds over {n_cohorts} signup {cfg.cohort_period}s, mean best round"
    return BoostingRounds(churn, value_rounds, True, reason, churn_folds, value_folds)


def _cohort_cv_rounds(
    make: Callable[[int], Any], best_round: Callable[..., int], x: np.ndarray, y: np.ndarray, cohorts: np.ndarray,
    cfg: BaselineConfig,
) -> tuple[int, tuple[int, ...]]:  # fmt: skip
    """The mean over folds of the round that early stopping picks on each fold's held-out cohorts."""
    from sklearn.model_selection import GroupKFold

    per_fold = tuple(
        best_round(make(cfg.cv_max_rounds), (x[fit], y[fit]), (x[held_out], y[held_out]))
        for fit, held_out in GroupKFold(n_splits=cfg.cv_folds).split(x, y, groups=cohorts)
    )
    return max(1, round(float(np.mean(per_fold)))), per_fold


def _predict_boosting(state: dict[str, Any], window: WindowTables) -> BaselinePredictions:
    x = _inputs(state["spec"], window.features)
    value = np.clip(state["value"].predict(x), 0, None)
    return BaselinePredictions(window.customer_ids, state["churn"].predict_proba(x)[:, 1], value)


@dataclass
class LightGBM:
    """LightGBM classifier for churn; a regressor on value⁺ with a Tweedie, MAE (l1) or quantile loss.

    ``value_objective="quantile"`` predicts the ``quantile_alpha`` quantile of value (0.5: the median, P50;
    0.9: P90). The number of rounds is chosen by cohort CV (see :class:`BaselineConfig`); ``rounds_`` says
    how many were used and how they were chosen.
    """

    value_objective: str = "tweedie"
    quantile_alpha: float = 0.5  # value_objective="quantile" only
    seed: int = 0
    config: BaselineConfig = field(default_factory=BaselineConfig)
    rounds_: BoostingRounds | None = field(default=None, init=False, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.value_objective not in VALUE_OBJECTIVES:
            raise ConfigError(f"value_objective must be one of {VALUE_OBJECTIVES}, got {self.value_objective!r}")
        if not 0 < self.quantile_alpha < 1:
            raise ConfigError(f"quantile_alpha must be in (0, 1), got {self.quantile_alpha}")
        if self.value_objective != "quantile" and self.quantile_alpha != 0.5:
            raise ConfigError(
                f"quantile_alpha={self.quantile_alpha} needs value_objective='quantile', got {self.value_objective!r}"
            )

    @property
    def name(self) -> str:
        if self.value_objective == "quantile":
            return f"LightGBM (quantile P{100 * self.quantile_alpha:g})"
        return f"LightGBM ({self.value_objective})"

    def fit(self, windows: Sequence[WindowTables]) -> LightGBM:
        recipe = _BoostingRecipe(self._churn_model, self._value_model, self._best_round, self.config.lgbm_n_estimators)
        self._state, self.rounds_ = _fit_boosting(recipe, windows, self.config)
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        return _predict_boosting(self._state, window)

    def _params(self, rounds: int) -> dict[str, Any]:
        c = self.config
        return {
            "n_estimators": rounds, "learning_rate": c.lgbm_learning_rate, "num_leaves": c.lgbm_num_leaves,
            "min_child_samples": c.lgbm_min_child_samples, "subsample": c.lgbm_subsample,
            "subsample_freq": c.lgbm_subsample_freq, "colsample_bytree": c.lgbm_colsample_bytree,
            "n_jobs": c.n_jobs, "random_state": self.seed, "verbose": -1,
        }  # fmt: skip

    def _churn_model(self, rounds: int) -> Any:
        from lightgbm import LGBMClassifier

        return LGBMClassifier(**self._params(rounds))

    def _value_model(self, rounds: int) -> Any:
        from lightgbm import LGBMRegressor

        if self.value_objective == "quantile":
            loss: dict[str, Any] = {"alpha": self.quantile_alpha}
        elif self.value_objective == "tweedie":
            loss = {"tweedie_variance_power": self.config.tweedie_variance_power}
        else:
            loss = {}
        return LGBMRegressor(objective=self.value_objective, **loss, **self._params(rounds))

    def _best_round(self, model: Any, fit: tuple[np.ndarray, ...], held_out: tuple[np.ndarray, ...]) -> int:
        from lightgbm import early_stopping

        stop = early_stopping(self.config.cv_early_stopping_rounds, verbose=False)
        model.fit(*fit, **_lgbm_eval_arguments(model, held_out), callbacks=[stop])
        return model.best_iteration_ or self.config.cv_max_rounds


def _lgbm_eval_arguments(model: Any, held_out: tuple[np.ndarray, ...]) -> dict[str, Any]:
    # LightGBM 4.7 deprecates eval_set for eval_X/eval_y, which older 4.x releases do not know
    if "eval_X" in inspect.signature(model.fit).parameters:
        return {"eval_X": held_out[0], "eval_y": held_out[1]}
    return {"eval_set": [held_out]}


@dataclass
class XGBoost:
    """XGBoost: a ``binary:logistic`` classifier for churn and a ``reg:tweedie`` regressor on value⁺.

    Histogram trees, deterministic for a given ``seed``. The number of rounds is chosen as for
    :class:`LightGBM`; ``rounds_`` says how many were used and how they were chosen.
    """

    seed: int = 0
    config: BaselineConfig = field(default_factory=BaselineConfig)
    name: str = "XGBoost (tweedie)"
    rounds_: BoostingRounds | None = field(default=None, init=False, repr=False)
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def fit(self, windows: Sequence[WindowTables]) -> XGBoost:
        recipe = _BoostingRecipe(self._churn_model, self._value_model, self._best_round, self.config.xgb_n_estimators)
        self._state, self.rounds_ = _fit_boosting(recipe, windows, self.config)
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        return _predict_boosting(self._state, window)

    def _params(self, rounds: int) -> dict[str, Any]:
        c = self.config
        return {
            "n_estimators": rounds, "learning_rate": c.xgb_learning_rate, "max_depth": c.xgb_max_depth,
            "min_child_weight": c.xgb_min_child_weight, "subsample": c.xgb_subsample,
            "colsample_bytree": c.xgb_colsample_bytree, "tree_method": "hist", "n_jobs": c.n_jobs,
            "random_state": self.seed,
        }  # fmt: skip

    def _churn_model(self, rounds: int) -> Any:
        from xgboost import XGBClassifier

        return XGBClassifier(objective="binary:logistic", **self._params(rounds))

    def _value_model(self, rounds: int) -> Any:
        from xgboost import XGBRegressor

        power = self.config.tweedie_variance_power
        return XGBRegressor(objective="reg:tweedie", tweedie_variance_power=power, **self._params(rounds))

    def _best_round(self, model: Any, fit: tuple[np.ndarray, ...], held_out: tuple[np.ndarray, ...]) -> int:
        model.set_params(early_stopping_rounds=self.config.cv_early_stopping_rounds)
        model.fit(*fit, eval_set=[held_out], verbose=False)
        return model.best_iteration + 1  # XGBoost counts rounds from 0


@dataclass
class RandomForest:
    """Random forests: a classifier for churn and a regressor on log1p(value⁺)."""

    seed: int = 0
    config: BaselineConfig = field(default_factory=BaselineConfig)
    name: str = "random forest"
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def fit(self, windows: Sequence[WindowTables]) -> RandomForest:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        d = _training_data(windows)
        c = self.config
        common = {"n_estimators": c.rf_n_estimators, "min_samples_leaf": c.rf_min_samples_leaf, "n_jobs": c.n_jobs,
                  "random_state": self.seed}  # fmt: skip
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


@dataclass
class LightGBMRich:
    """LightGBM on the rich features alone, as a strong data scientist would ship it: the ``lightgbm-rich`` baseline.

    Every numeric column of the feature tables (RFM, recency windows, trends, timing, baskets, products,
    BTYD quantities…) as raw values, categorical profile columns as ids; a classifier for churn and a Tweedie
    regressor for value, each with its rounds early-stopped on a held-out share of the training customers,
    then refitted on all of them (:mod:`custseq.baselines.boosted`, the boosted head custseq itself uses,
    here without the sequence embedding, the model choice or the calibration).
    """

    seed: int = 0
    config: PredictorConfig = field(default_factory=PredictorConfig)
    name: str = "LightGBM (rich features)"
    _head: BoostedHead | None = field(default=None, init=False, repr=False)

    def fit(self, windows: Sequence[WindowTables]) -> LightGBMRich:
        inputs = BoostedInputs.of(fit_tabular([w.features for w in windows]), 0)
        x = np.concatenate([inputs.matrix(w.features) for w in windows])
        labels = [w.label_arrays() for w in windows]
        ids = [c for w in windows for c in w.customer_ids]
        held_out = early_stopping_mask(ids, self.config.early_stopping_fraction)
        churned, value = np.concatenate([c for c, _ in labels]), np.concatenate([v for _, v in labels])
        self._head = fit_boosted(inputs, x, churned, value, held_out, self.config, self.seed)
        return self

    def predict(self, window: WindowTables) -> BaselinePredictions:
        if self._head is None:
            raise ValueError("fit the baseline first")
        churn, value = self._head.predict(window.features)
        return BaselinePredictions(window.customer_ids, churn, value)
