"""A head: LightGBM (or, on few labels, logistic / ridge regression) on the embeddings, optionally with features.

CASPR (seed 003) reuses one customer representation for many tasks with a small model on top; this is that
model for any label a user has. Its inputs are the window's raw numeric features (LightGBM reads missing values
natively), categorical profile columns as vocabulary ids and the embedding (:class:`BoostedInputs`). The linear
fallback takes ``sign(x)·log1p(|x|)`` of the feature columns, standardises every column and reads missing values
as the mean. Both are plain data: LightGBM's own text format and JSON coefficients, never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from custseq.baselines.boosted import BoostedInputs
from custseq.config.downstream import HeadConfig

Kind = Literal["lightgbm", "linear"]


@dataclass
class LightGbmModel:
    """A fitted LightGBM booster (binary, multiclass or L2 regression)."""

    booster: Any  # lightgbm.Booster

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) P(positive) or value, or (N, K) class probabilities."""
        return np.asarray(self.booster.predict(x), dtype=np.float64)


@dataclass
class LinearModel:
    """Logistic (binary / multinomial) or ridge regression on standardised columns; coefficients as arrays."""

    task: str  # classification or regression
    log_columns: int  # the first this many columns get sign(x)·log1p(|x|) (the feature columns)
    means: np.ndarray  # (W,) of the transformed training columns (NaN-aware)
    stds: np.ndarray  # (W,)
    coef: np.ndarray  # (1, W) binary / regression, (K, W) multiclass
    intercept: np.ndarray  # (1,) or (K,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) P(positive) or value, or (N, K) class probabilities."""
        z = standardised(x, self.log_columns, self.means, self.stds) @ self.coef.T + self.intercept  # (N, K)
        if self.task == "regression":
            return np.asarray(z[:, 0], dtype=np.float64)
        if z.shape[1] == 1:
            return np.asarray(1.0 / (1.0 + np.exp(-z[:, 0])), dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task, "log_columns": self.log_columns, "means": self.means.tolist(),
            "stds": self.stds.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LinearModel:
        return cls(
            str(d["task"]), int(d["log_columns"]), np.array(d["means"], dtype=np.float64),
            np.array(d["stds"], dtype=np.float64), np.array(d["coef"], dtype=np.float64),
            np.array(d["intercept"], dtype=np.float64),
        )  # fmt: skip


HeadModel = LightGbmModel | LinearModel


@dataclass
class FittedHead:
    """A head fitted on one label: what it reads, its model, and how well it did (saved as ``head.json``)."""

    config: HeadConfig
    label: str
    classes: tuple[str, ...]  # classification: class names, the positive one last for two; () regression
    inputs: BoostedInputs
    kind: Kind
    model: HeadModel
    model_fingerprint: str  # the custseq model's weights_sha256: the embeddings the head was fitted on
    as_of: str  # the labels' as-of date: inputs came from rows up to the end of that day
    metrics: dict[str, dict[str, float]]  # candidate -> metric -> cross-validated mean (and ``<metric>_std``)
    counts: dict[str, int]  # labelled, used, unknown customers, rows without a label

    @property
    def column(self) -> str:
        """The predictions column the head adds."""
        return f"head_{self.label}"

    @property
    def needs_features(self) -> bool:
        return bool(self.inputs.numeric or self.inputs.categorical)

    def predict(self, features: pa.Table, embeddings: np.ndarray) -> np.ndarray:
        """(N,) P(positive class) or value, or (N, K) class probabilities."""
        return self.model.predict(self.inputs.matrix(features, embeddings))

    def columns(self, features: pa.Table, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """The columns the head adds to predictions: ``head_<label>`` (P(positive class), the value, or with more
        than two classes the likeliest class, then ``head_<label>_p_<class>`` for each class)."""
        p = self.predict(features, embeddings)
        if p.ndim == 1:
            return {self.column: p}
        columns = {self.column: np.array(self.classes, dtype=object)[p.argmax(axis=1)]}
        columns |= {f"{self.column}_p_{c}": p[:, k] for k, c in enumerate(self.classes)}
        return columns


def kind_for(n_labelled: int, cfg: HeadConfig) -> Kind:
    """LightGBM, or the linear fallback on fewer than ``cfg.linear_below`` labelled customers."""
    return "linear" if n_labelled < cfg.linear_below else "lightgbm"


def fit_model(x: np.ndarray, y: np.ndarray, n_classes: int, kind: Kind, log_columns: int, cfg: HeadConfig) -> HeadModel:
    """Fit a head's model; ``n_classes`` 0 = regression, ``y`` class indices otherwise."""
    if kind == "lightgbm":
        return _fit_lightgbm(x, y, n_classes, cfg)
    return _fit_linear(x, y, n_classes, log_columns, cfg)


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: HeadConfig) -> LightGbmModel:
    import lightgbm as lgb

    params: dict[str, Any] = {
        "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves, "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction, "num_threads": cfg.n_jobs, "seed": cfg.seed, "deterministic": True,
        "verbose": -1,
    }  # fmt: skip
    if n_classes == 0:
        params["objective"] = "regression"
    elif n_classes == 2:
        params["objective"] = "binary"
    else:
        params |= {"objective": "multiclass", "num_class": n_classes}
    return LightGbmModel(lgb.train(params, lgb.Dataset(x, y), num_boost_round=cfg.rounds))


def _fit_linear(x: np.ndarray, y: np.ndarray, n_classes: int, log_columns: int, cfg: HeadConfig) -> LinearModel:
    from sklearn.linear_model import LogisticRegression, Ridge

    means, stds = _column_moments(_signed_log1p(x, log_columns))
    z = standardised(x, log_columns, means, stds)
    if n_classes == 0:
        ridge = Ridge(alpha=1.0 / cfg.linear_c).fit(z, y)
        coef, intercept = np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_)
        return LinearModel("regression", log_columns, means, stds, coef, intercept)
    logistic = LogisticRegression(C=cfg.linear_c, max_iter=2000).fit(z, y)
    coef, intercept = np.atleast_2d(logistic.coef_), np.atleast_1d(logistic.intercept_)
    return LinearModel("classification", log_columns, means, stds, coef, intercept)


def _column_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column over its present values (0 and 1 for an all-missing one)."""
    present = ~np.isnan(x)
    n = present.sum(axis=0)
    filled = np.where(present, x, 0.0)
    means = filled.sum(axis=0) / np.maximum(n, 1)
    variances = (np.where(present, x - means, 0.0) ** 2).sum(axis=0) / np.maximum(n, 1)
    stds = np.sqrt(variances)
    return means, np.where(stds > 1e-12, stds, 1.0)


def standardised(x: np.ndarray, log_columns: int, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(x transformed − mean) / std, missing values as 0 (the mean)."""
    return np.nan_to_num((_signed_log1p(x, log_columns) - means) / stds, nan=0.0, posinf=0.0, neginf=0.0)


def _signed_log1p(x: np.ndarray, log_columns: int) -> np.ndarray:
    out = np.array(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[:, :log_columns] = np.sign(out[:, :log_columns]) * np.log1p(np.abs(out[:, :log_columns]))
    return out
