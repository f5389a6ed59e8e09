"""A scikit-learn style estimator around ``predict``: ``fit`` on transactions, ``predict`` and ``transform``.

It follows scikit-learn's conventions: ``__init__`` only stores its arguments, fitted attributes end in
``_``, and ``sklearn.base.clone`` gives an unfitted copy. ``X`` is a transactions table (anything
``predict`` reads: a DataFrame, a path, ``db.duckdb:table``); profiles and events are keyword arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from custseq.config import RunConfig, with_seed, with_window
from custseq.errors import TrainingError
from custseq.io.tables import Tables
from custseq.pipelines.outputs import PredictRun
from custseq.pipelines.predict import predict
from custseq.pipelines.score import score_with_model


class ChurnValueEstimator(BaseEstimator):  # type: ignore[misc]  # scikit-learn is untyped: BaseEstimator is Any
    """Churn probability and value over ``horizon`` for every customer, learned from event sequences.

    Parameters
    ----------
    horizon : str or int
        ``90d``, ``13w``, ``6m``, ``1y`` or days.
    as_of : str, optional
        Inclusive date the model is trained up to (default: the last day of the data given to ``fit``).
    config : RunConfig, optional
        Every other setting (columns, validation, windows, model).
    seed : int
        Seed of every random choice.
    pretraining : bool
        Pre-train the encoder self-supervised before fine-tuning.

    Attributes
    ----------
    model_ : ChurnValueModel
        The fitted model (network, vocabulary, tabular spec, calibration).
    metrics_ : custseq.io.run_files.Metrics
        What metrics.json records: validation metrics of the fit, back-test metrics when the horizon after
        ``as_of`` is in the data, how P(alive), value scores and plans were made.
    as_of_ : str
        The as-of date the model was trained for.
    """

    def __init__(
        self,
        horizon: str | int = "90d",
        as_of: str | None = None,
        config: RunConfig | None = None,
        seed: int = 0,
        pretraining: bool = True,
    ) -> None:
        self.horizon = horizon
        self.as_of = as_of
        self.config = config
        self.seed = seed
        self.pretraining = pretraining

    def fit(self, X: Any, y: None = None, *, customers: Any = None, events: Any = None) -> ChurnValueEstimator:
        """Train on the windows before ``as_of``; ``y`` is ignored (labels come from the transactions)."""
        cfg = with_window(self._config(), as_of=self.as_of, horizon=self.horizon)
        run = predict(Tables.of(X, customers=customers, events=events, columns=cfg.columns), cfg)
        if run.model is None:
            raise TrainingError(
                "no labelled window fits before the as-of date, so there is no model to fit: the history is too "
                "short. custseq.predict still answers with BG/NBD + Gamma-Gamma alone; or give more history."
            )
        self.model_ = run.model
        self.proposer_ = run.proposer
        self.data_config_ = run.data_config
        self.metrics_ = run.metrics
        self.as_of_ = run.as_of
        return self

    def predict(self, X: Any, *, as_of: str | None = None, customers: Any = None, events: Any = None) -> pd.DataFrame:
        """One row per customer of ``X`` with history at ``as_of`` (default: the last day of ``X``)."""
        return self._score(X, as_of, customers, events).predictions

    def transform(self, X: Any, *, as_of: str | None = None, customers: Any = None, events: Any = None) -> pd.DataFrame:
        """Customer embeddings: ``customer_id``, ``e0 … e{D-1}``."""
        return self._score(X, as_of, customers, events).embeddings

    def _score(self, X: Any, as_of: str | None, customers: Any, events: Any) -> PredictRun:
        if not hasattr(self, "model_"):
            raise NotFittedError("this ChurnValueEstimator is not fitted yet; call fit first")
        tables = Tables.of(X, customers=customers, events=events)
        return score_with_model(self.model_, self.data_config_, tables, as_of=as_of, proposer=self.proposer_)

    def _config(self) -> RunConfig:
        cfg = self.config or RunConfig()
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretraining=self.pretraining))
        return with_seed(cfg, self.seed)
