"""Prospects in a run: the model of their own fitted on the prepared windows, and their scores at the as-of date.

``predict`` calls :func:`fit_prospects` and :func:`score_prospects`; ``score`` only the latter, with the saved model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import ProspectSummary, RunFolder
from custseq.models.prospects import ProspectModel, fit_prospect_model, why_not_fit

EXCLUDED = 'excluded by the setting [prospects] mode = "exclude"'
NO_PROSPECT_MODEL = "the model has no prospects' model (its training data had no events, or too few prospects)"


@dataclass(frozen=True)
class ProspectFit:
    """The fitted model, or why there is none."""

    model: ProspectModel | None
    not_fitted_because: str | None


@dataclass(frozen=True)
class ScoredProspects:
    """The prospects.csv rows (None when none were scored) and the metrics.json summary."""

    frame: pd.DataFrame | None
    summary: ProspectSummary

    def write(self, folder: Path) -> None:
        if self.frame is not None:
            RunFolder(folder).write_prospects(self.frame)


def fit_prospects(layout: PreparedWindows, cfg: RunConfig, seed: int) -> ProspectFit:
    """Fit on the training windows' prospects, measured on the validation window's (the customers' roles)."""
    if cfg.prospects.mode == "exclude":
        return ProspectFit(None, EXCLUDED)
    train = _read([w for w in layout.training[1:] if w.has_labels])
    if train is None:
        return ProspectFit(None, "no prospects in the training windows")
    if (reason := why_not_fit(train, cfg.prospects)) is not None:
        return ProspectFit(None, reason)
    validation = _read([layout.validation]) if layout.validation.has_labels else None
    return ProspectFit(fit_prospect_model(train, validation, cfg.model.predictor, seed), None)


def score_prospects(
    fitted: ProspectFit, folder: WindowFolder, cfg: RunConfig, *, integer_ids: bool = False
) -> ScoredProspects | None:
    """Score the scoring window's prospects (None when the data have no events table)."""
    if not folder.prospects.is_file():
        return None
    features = pq.read_table(folder.prospects)
    if cfg.prospects.mode == "exclude":
        fitted = ProspectFit(None, EXCLUDED)
    model = fitted.model
    if model is None or features.num_rows == 0:
        reason = fitted.not_fitted_because if model is None else None
        summary = ProspectSummary(
            mode=cfg.prospects.mode, prospects=features.num_rows, scored=0, not_scored_because=reason,
            training_prospects=model.training_prospects if model is not None else None,
            validation=model.validation if model is not None else None,
        )  # fmt: skip
        return ScoredProspects(None, summary)
    p_churn, value = model.predict(features)
    frame = _frame(features, p_churn, value, integer_ids)
    summary = ProspectSummary(
        mode=cfg.prospects.mode, prospects=features.num_rows, scored=len(frame), not_scored_because=None,
        training_prospects=model.training_prospects, validation=model.validation,
        expected_first_purchases=round(float(np.sum(1 - p_churn)), 1), expected_value=round(float(value.sum()), 2),
    )  # fmt: skip
    return ScoredProspects(frame, summary)


def _frame(features: pa.Table, p_churn: np.ndarray, value: np.ndarray, integer_ids: bool) -> pd.DataFrame:
    """One row per prospect, the likeliest first buyers first."""
    ids = pd.Series(features.column("customer_id").to_pylist())
    if integer_ids and (numeric := pd.to_numeric(ids, errors="coerce")).notna().all():
        ids = numeric.astype("int64")
    frame = pd.DataFrame({
        "customer_id": ids,
        "first_purchase_probability": np.round(1 - p_churn, 4),
        "churn_probability": np.round(p_churn, 4),
        "expected_value": np.round(value, 2),
        "n_events": features.column("n_events").to_numpy(zero_copy_only=False),
        "n_events_last_30d": features.column("n_events_last_30d").to_numpy(zero_copy_only=False),
        "days_since_last_event": features.column("days_since_last_event").to_numpy(zero_copy_only=False),
    })  # fmt: skip
    return frame.sort_values(["first_purchase_probability", "customer_id"], ascending=[False, True], ignore_index=True)


def _read(folders: list[WindowFolder]) -> pa.Table | None:
    tables = [pq.read_table(f.prospects) for f in folders if f.prospects.is_file()]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables, promote_options="default") if tables else None
