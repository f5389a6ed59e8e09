"""The boosted head: LightGBM for churn and for value (Tweedie) on a window's features, optionally with embeddings.

Seed 003 (CASPR) puts a gradient-boosted model downstream of the learnt customer representation; this is that
model. Its inputs are the raw numeric columns of the feature tables (LightGBM needs no scaling and reads
missing values natively), categorical profile columns as vocabulary ids (:mod:`custseq.features.matrix`), and
optionally the network's customer embedding. The number of rounds is early-stopped on a held-out share of the
training customers, then both models are fitted again on all the rows they may see with that many rounds.

Fitted boosters are saved as LightGBM's own text format inside JSON: nothing is unpickled when loading.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from custseq.config import PredictorConfig
from custseq.errors import ArtifactError
from custseq.features.matrix import TabularSpec, as_float, category_ids

BOOSTED_FORMAT = 1


@dataclass(frozen=True)
class BoostedInputs:
    """Which columns the boosted head reads, in order: feature columns, categorical ids, embedding width."""

    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]  # column -> known values (id = FIRST_ID + position)
    embedding_dim: int  # 0: no embedding

    @classmethod
    def of(cls, spec: TabularSpec, embedding_dim: int) -> BoostedInputs:
        return cls(spec.numeric, dict(spec.categorical), embedding_dim)

    def matrix(self, features: pa.Table, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(N, width) float64: raw numeric values (NaN when missing or not finite), category ids, embedding."""
        n = features.num_rows
        parts = [as_float(features.column(c)) for c in self.numeric]
        parts += [category_ids(features.column(c), known).astype(np.float64) for c, known in self.categorical.items()]
        x = np.column_stack(parts) if parts else np.zeros((n, 0))
        if self.embedding_dim:
            if embeddings is None or embeddings.shape != (n, self.embedding_dim):
                raise ArtifactError(f"the boosted head needs a ({n}, {self.embedding_dim}) embedding matrix")
            x = np.hstack([x, embeddings.astype(np.float64)])
        return x

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BoostedInputs:
        return cls(tuple(d["numeric"]), {k: tuple(v) for k, v in d["categorical"].items()}, int(d["embedding_dim"]))


PREDICT_ROWS = 65_536  # rows BoostedHead.predict turns into a matrix at a time


@dataclass
class BoostedHead:
    """Two fitted LightGBM boosters: P(churn) and expected value over the horizon."""

    inputs: BoostedInputs
    churn: Any  # lightgbm.Booster
    value: Any  # lightgbm.Booster
    rounds: tuple[int, int]  # churn, value

    def predict(self, features: pa.Table, embeddings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """P(churn) and expected value of each row, :data:`PREDICT_ROWS` rows at a time (a million customers'
        matrix would be 2 GiB)."""
        n = features.num_rows
        if embeddings is not None and len(embeddings) != n:
            raise ArtifactError(f"the boosted head needs a ({n}, {self.inputs.embedding_dim}) embedding matrix")
        churn, value = [np.zeros(0)], [np.zeros(0)]
        for start in range(0, n, PREDICT_ROWS):
            rows = features.slice(start, PREDICT_ROWS)
            part = embeddings[start : start + rows.num_rows] if embeddings is not None else None
            x = self.inputs.matrix(rows, part)
            churn.append(np.clip(self.churn.predict(x), 1e-6, 1 - 1e-6))
            value.append(np.clip(self.value.predict(x), 0.0, None))
        return np.concatenate(churn), np.concatenate(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": BOOSTED_FORMAT,
            "inputs": self.inputs.to_json(),
            "rounds": list(self.rounds),
            "churn": self.churn.model_to_string(),
            "value": self.value.model_to_string(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BoostedHead:
        import lightgbm as lgb

        if not isinstance(d, dict) or d.get("format_version") != BOOSTED_FORMAT:
            raise ArtifactError(f"boosted head of an unknown format (this custseq reads {BOOSTED_FORMAT})")
        try:
            churn, value = lgb.Booster(model_str=d["churn"]), lgb.Booster(model_str=d["value"])
            rounds = (int(d["rounds"][0]), int(d["rounds"][1]))
            return cls(BoostedInputs.from_json(d["inputs"]), churn, value, rounds)
        except (KeyError, TypeError, ValueError, IndexError, lgb.basic.LightGBMError) as e:
            raise ArtifactError(f"the boosted head is incomplete or corrupted: {e!r}") from None


def fit_boosted(
    inputs: BoostedInputs,
    x: np.ndarray,
    churned: np.ndarray,
    value: np.ndarray,
    early_stopping: np.ndarray,
    cfg: PredictorConfig,
    seed: int,
) -> BoostedHead:
    """Early-stop each model on the rows where ``early_stopping`` is true, then refit on all rows.

    ``x`` comes from ``inputs.matrix``; ``value`` below 0 (refunds exceeding purchases) counts as 0.
    """
    value = np.clip(value, 0.0, None)
    churn_rounds = _best_rounds(x, churned, early_stopping, _churn_params(cfg, seed), cfg)
    value_rounds = _best_rounds(x, value, early_stopping, _value_params(cfg, seed), cfg)
    return _fit_rounds(inputs, (churn_rounds, value_rounds), x, churned, value, cfg, seed)


def refit_boosted(
    head: BoostedHead, x: np.ndarray, churned: np.ndarray, value: np.ndarray, cfg: PredictorConfig, seed: int
) -> BoostedHead:
    """The same head fitted again on other rows with the rounds it already chose."""
    return _fit_rounds(head.inputs, head.rounds, x, churned, value, cfg, seed)


def _fit_rounds(
    inputs: BoostedInputs, rounds: tuple[int, int], x: np.ndarray, churned: np.ndarray, value: np.ndarray,
    cfg: PredictorConfig, seed: int,
) -> BoostedHead:  # fmt: skip
    churn = _train(x, churned, _churn_params(cfg, seed), rounds[0])
    value_model = _train(x, np.clip(value, 0.0, None), _value_params(cfg, seed), rounds[1])
    return BoostedHead(inputs, churn, value_model, rounds)


def early_stopping_mask(ids: list[str], fraction: float) -> np.ndarray:
    """A stable share of customers (by an id hash independent of the network's split) for early stopping."""
    band = np.array([zlib.crc32(b"boosted:" + i.encode()) % 10_000 for i in ids], dtype=np.int64) / 10_000
    return band < fraction


def _churn_params(cfg: PredictorConfig, seed: int) -> dict[str, Any]:
    return _params(cfg, seed) | {"objective": "binary"}


def _value_params(cfg: PredictorConfig, seed: int) -> dict[str, Any]:
    return _params(cfg, seed) | {"objective": "tweedie", "tweedie_variance_power": cfg.tweedie_variance_power}


def _params(cfg: PredictorConfig, seed: int) -> dict[str, Any]:
    return {
        "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves, "min_child_samples": cfg.min_child_samples,
        "bagging_fraction": cfg.subsample, "bagging_freq": 1, "feature_fraction": cfg.colsample_bytree,
        "num_threads": max(cfg.n_jobs, 0), "seed": seed, "deterministic": True, "verbose": -1,
    }  # fmt: skip


def _best_rounds(x: np.ndarray, y: np.ndarray, held_out: np.ndarray, params: dict[str, Any],
                 cfg: PredictorConfig) -> int:  # fmt: skip
    import lightgbm as lgb

    fit = ~held_out
    one_class = params["objective"] == "binary" and len(np.unique(y[held_out])) < 2  # nothing to early-stop on
    if held_out.sum() < 10 or fit.sum() < 10 or one_class:
        return min(cfg.max_rounds, 200)
    train_set = lgb.Dataset(x[fit], y[fit], free_raw_data=True)
    valid_set = lgb.Dataset(x[held_out], y[held_out], reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=cfg.max_rounds, valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )  # fmt: skip
    return max(1, int(booster.best_iteration or cfg.max_rounds))


def _train(x: np.ndarray, y: np.ndarray, params: dict[str, Any], rounds: int) -> Any:
    import lightgbm as lgb

    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
