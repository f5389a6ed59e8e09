"""Cross-validated metrics of a head against the features alone and a trivial baseline, on the same folds.

Each labelled customer is one row, so a K-fold over rows is a customer-level K-fold: no customer is ever in
the training and the test part of one fold. Classification folds are stratified. The trivial baseline predicts
the training part's class shares (classification) or mean (regression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from custseq.baselines.boosted import BoostedInputs
from custseq.config.downstream import HeadConfig
from custseq.downstream.head import Kind, fit_model

BASELINE = "baseline"
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


@dataclass(frozen=True)
class Candidate:
    """One set of inputs compared in the folds: ``embeddings+features``, ``embeddings`` or ``features``."""

    name: str
    inputs: BoostedInputs


def cross_validate(
    candidates: list[Candidate],
    features: pa.Table,
    embeddings: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    kind: Kind,
    cfg: HeadConfig,
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over ``cfg.folds`` folds of each candidate's metrics, and the baseline's.

    Returns
    -------
    dict
        candidate name (and ``baseline``) -> ``{metric: mean, metric_std: std}``; metrics are ``auc``,
        ``log_loss`` and ``accuracy`` for classification (AUC one-vs-rest, macro, above two classes), ``rmse``
        and ``mae`` for regression.
    """
    matrices = {c.name: c.inputs.matrix(features, embeddings) for c in candidates}
    per_fold: dict[str, list[dict[str, float]]] = {name: [] for name in [*matrices, BASELINE]}
    for train, test in folds(y, n_classes, cfg):
        for c in candidates:
            x = matrices[c.name]
            model = fit_model(x[train], y[train], n_classes, kind, len(c.inputs.numeric), cfg)
            per_fold[c.name].append(head_metrics(y[test], model.predict(x[test]), n_classes))
        per_fold[BASELINE].append(head_metrics(y[test], trivial(y[train], n_classes, len(test)), n_classes))
    return {name: _mean_and_std(rows) for name, rows in per_fold.items()}


def folds(y: np.ndarray, n_classes: int, cfg: HeadConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row positions of each fold, shuffled with ``cfg.seed``."""
    splitter = (
        StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
        if n_classes
        else KFold(cfg.folds, shuffle=True, random_state=cfg.seed)
    )
    return list(splitter.split(np.zeros(len(y)), y))


def trivial(y_train: np.ndarray, n_classes: int, n: int) -> np.ndarray:
    """The baseline's predictions for ``n`` rows: the training class shares, or the training mean."""
    if n_classes == 0:
        return np.full(n, float(np.mean(y_train)))
    shares = np.bincount(y_train.astype(np.int64), minlength=n_classes) / len(y_train)
    return np.full(n, shares[1]) if n_classes == 2 else np.tile(shares, (n, 1))


def head_metrics(y: np.ndarray, p: np.ndarray, n_classes: int) -> dict[str, float]:
    """Regression: RMSE and MAE. Classification: AUC, log loss and accuracy of the likeliest class."""
    if n_classes == 0:
        error = p - y
        return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}
    if n_classes == 2:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        probabilities = np.column_stack([1 - p, p])
        auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    else:
        probabilities = np.clip(p, 1e-7, 1.0)
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        present = len(np.unique(y)) == n_classes
        auc = (
            float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=range(n_classes)))
            if present
            else float("nan")
        )
    return {
        "auc": auc,
        "log_loss": float(log_loss(y, probabilities, labels=list(range(n_classes)))),
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == y)),
    }


def _mean_and_std(rows: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in rows[0]:
        values = np.array([r[metric] for r in rows], dtype=np.float64)
        out[metric] = round(float(np.nanmean(values)), 6)
        out[f"{metric}_std"] = round(float(np.nanstd(values)), 6)
    return out
