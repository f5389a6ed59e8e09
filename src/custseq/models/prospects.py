"""The prospects' model: LightGBM on their events and profile columns, for a first purchase and its value.

Prospects (:mod:`custseq.features.prospects`) are not in the customers' windows, so they get a model of their own:
the boosted head of :mod:`custseq.baselines.boosted` (P(no first purchase in the horizon), and the value
bought in it with a Tweedie loss), fitted on the training windows' prospects and measured on the validation
window's, against ranking by the recency of their last event. Saved in the model's config.json (LightGBM's
text models inside JSON).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from custseq.baselines.boosted import BoostedHead, BoostedInputs, early_stopping_mask, fit_boosted
from custseq.config import PredictorConfig, ProspectConfig
from custseq.errors import ArtifactError
from custseq.features.matrix import fit_tabular
from custseq.io.run_files import ProspectValidation
from custseq.metrics import brier, normalized_gini, roc_auc

LABEL_COLUMNS = ("churned", "purchases", "value")


@dataclass
class ProspectModel:
    """The fitted head and how it did on the validation window's prospects (None without one)."""

    head: BoostedHead
    validation: ProspectValidation | None
    training_prospects: int

    def predict(self, features: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """P(no first purchase in the horizon) and the expected value bought in it, per row of ``features``."""
        return self.head.predict(features)

    def to_json(self) -> dict:
        return {
            "head": self.head.to_json(),
            "validation": self.validation.to_json() if self.validation is not None else None,
            "training_prospects": self.training_prospects,
        }

    @classmethod
    def from_json(cls, d: dict) -> ProspectModel:
        try:
            validation = ProspectValidation.from_json(d["validation"]) if d["validation"] is not None else None
            return cls(BoostedHead.from_json(d["head"]), validation, int(d["training_prospects"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"the prospects' model is incomplete or corrupted ({e!r}); run predict again") from None


def why_not_fit(train: pa.Table, cfg: ProspectConfig) -> str | None:
    """Why the training prospects are too few to learn from (None: enough)."""
    converted = train.num_rows - int(np.sum(train.column("churned").to_numpy(zero_copy_only=False)))
    if train.num_rows < cfg.min_training_prospects:
        return f"{train.num_rows} prospects in the training windows (at least {cfg.min_training_prospects} needed)"
    if converted < cfg.min_first_purchases:
        return f"{converted} first purchases in the training windows (at least {cfg.min_first_purchases} needed)"
    return None


def fit_prospect_model(train: pa.Table, validation: pa.Table | None, cfg: PredictorConfig, seed: int) -> ProspectModel:
    """Fit on ``train`` (features with the label columns), measure on ``validation``, then refit on both.

    Rounds are early-stopped on a share of the training prospects, as for the customers' boosted head.
    """
    spec = fit_tabular([_features_only(train)])
    inputs = BoostedInputs.of(spec, 0)
    head = _fit(inputs, train, cfg, seed)
    measured = _measure(head, validation) if validation is not None and validation.num_rows else None
    if measured is not None:  # the validation prospects are labelled too: learn from them for the final model
        head = _fit(inputs, pa.concat_tables([train, validation], promote_options="default"), cfg, seed)
    return ProspectModel(head, measured, train.num_rows)


def _features_only(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in LABEL_COLUMNS if c in table.column_names])


def _fit(inputs: BoostedInputs, table: pa.Table, cfg: PredictorConfig, seed: int) -> BoostedHead:
    x = inputs.matrix(table)
    churned = table.column("churned").to_numpy(zero_copy_only=False).astype(np.float64)
    value = np.nan_to_num(table.column("value").to_numpy(zero_copy_only=False).astype(np.float64))
    ids = [str(i) for i in table.column("customer_id").to_pylist()]
    stopping = early_stopping_mask(ids, cfg.early_stopping_fraction)
    return fit_boosted(inputs, x, churned, value, stopping, cfg, seed)


def _measure(head: BoostedHead, validation: pa.Table) -> ProspectValidation:
    churned = validation.column("churned").to_numpy(zero_copy_only=False).astype(np.float64)
    value = np.nan_to_num(validation.column("value").to_numpy(zero_copy_only=False).astype(np.float64))
    p_churn, expected = head.predict(_features_only(validation))
    recency = validation.column("days_since_last_event").to_numpy(zero_copy_only=False).astype(np.float64)
    both = 0 < churned.sum() < len(churned)
    return ProspectValidation(
        prospects=len(churned),
        first_purchase_rate=round(float(1 - churned.mean()), 4),
        churn_auc=round(roc_auc(churned, p_churn), 4) if both else None,
        recency_auc=round(roc_auc(churned, np.nan_to_num(recency, nan=np.nanmax(recency, initial=0) + 1)), 4)
        if both
        else None,
        churn_brier=round(brier(churned, p_churn), 4),
        value_gini=round(normalized_gini(value, expected), 4) if value.sum() > 0 else None,
        predicted_value=round(float(expected.sum()), 2),
        actual_value=round(float(value.sum()), 2),
    )
