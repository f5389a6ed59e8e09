"""Diagnostics of a run: what it writes, besides the predictions, to be understood and checked (by the report).

- ``validation.parquet``: the held-out customers of the latest training window with their labels, custseq's
  predictions and BG/NBD + Gamma-Gamma's, for the curves and the bias audit of a ``predict`` run;
- ``history.json``: the pre-training and fine-tuning loss curves;
- ``attention.json``: the [CLS] attention of sample customers (:mod:`custseq.models.attention`);
- ``profit.json``: the retention profit curve (:mod:`custseq.scoring.profit`), thinned for plotting;
- ``audit.json`` and ``review.csv``: the bias audit (with the group corrections, when asked for) and the
  human-review list (:mod:`custseq.evaluation.fairness`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from custseq.baselines.btyd import BtydPredictions, predict_btyd
from custseq.config import AuditConfig, ProfitConfig, ReportConfig, RunConfig
from custseq.errors import TrainingError
from custseq.evaluation.fairness import (
    BTYD_COLUMNS,
    Audit,
    audit,
    btyd_frame,
    group_definitions,
    group_labels,
    recalibrate,
    review_list,
)
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import Attention, AttentionSample, EpochRecord, History, Profit, ProfitBest, ProfitCurve
from custseq.models.attention import attention_samples
from custseq.models.encoder import SequenceEncoder
from custseq.models.finetune import ChurnValueModel, score_window
from custseq.models.train import TrainResult
from custseq.scoring.profit import ProfitSimulation
from custseq.scoring.segments import assign_segments

PROFIT_POINTS = 500  # points of the saved profit curve; the best k of each ordering is always kept


def validation_predictions(model: ChurnValueModel, window: WindowFolder, cfg: RunConfig) -> pd.DataFrame:
    """The latest training window's validation customers: labels, custseq's predictions, BG/NBD's, segment.

    The network's weights were not fitted on these customers, but its early stopping and churn calibration
    were, so their curves are slightly optimistic (the report says so; ``evaluate`` tests on a later window).
    BG/NBD needs no labels and is fitted on the window's own pre-cutoff summary.
    """
    scores = score_window(model, window, part="validation")
    if scores.churned is None or scores.value is None:
        raise TrainingError(f"{window.folder} has no labels")
    frame = scores.table().to_pandas()
    frame.insert(1, "churned", scores.churned.astype(bool))
    frame.insert(2, "value", scores.value.astype(float))
    features = pq.read_table(window.features)
    with contextlib.suppress(TrainingError):  # BG/NBD could not be fitted here: the report shows custseq alone
        frame = frame.merge(btyd_frame(predict_btyd(features, model.horizon_days)), on="customer_id", how="left")
    frame["segment"] = assign_segments(frame, features.to_pandas(), cfg.segments, horizon_days=model.horizon_days)
    return cast(pd.DataFrame, frame)


def audit_validation(validation: pd.DataFrame, window: WindowFolder, cfg: AuditConfig) -> Audit:
    """The bias audit of :mod:`custseq.evaluation.fairness` on the validation customers of ``window``; with
    ``cfg.recalibrate_groups``, the corrections of its flagged groups too (the groups' rules come from every
    customer of the window, as the audit's groups do)."""
    features = pq.read_table(window.features).to_pandas()
    definitions = group_definitions(features, cfg)
    groups = group_labels(features, definitions)
    result = audit(validation, groups, cfg)
    if not cfg.recalibrate_groups:
        return result
    return dataclasses.replace(result, recalibration=recalibrate(result, validation, groups, definitions, cfg))


def review_table(predictions: pd.DataFrame, btyd: BtydPredictions | None, cfg: AuditConfig) -> pd.DataFrame:
    """review.csv: customers on whom custseq and BG/NBD disagree (none listed when BG/NBD could not be fitted)."""
    other = btyd_frame(btyd) if btyd is not None else pd.DataFrame(columns=BTYD_COLUMNS)
    return review_list(predictions, other, cfg)


def training_history(pretrain: TrainResult | None, finetune: TrainResult) -> History:
    """Per epoch losses (and every logged metric) of pre-training and fine-tuning."""
    epochs = [] if pretrain is None else pretrain.history
    return History(
        pretrain=tuple(EpochRecord.from_json(e) for e in epochs),
        finetune=tuple(EpochRecord.from_json(e) for e in finetune.history),
    )


def attention_customers(predictions: pd.DataFrame, n: int) -> list[str]:
    """``n`` customers spread over the churn range (quantiles 0.95 … 0.05), so that both ends are shown."""
    if n == 0 or predictions.empty:
        return []
    ranked = predictions[["churn_probability", "customer_id"]].sort_values(
        ["churn_probability", "customer_id"], ascending=[False, True]
    )  # the two columns only: a million customers' plans need not be copied to pick a few
    positions = np.unique(np.round(np.linspace(0.05, 0.95, n) * (len(ranked) - 1)).astype(int))
    return ranked["customer_id"].iloc[positions].astype(str).tolist()


def attention_of(
    model: ChurnValueModel, window: WindowFolder, predictions: pd.DataFrame, cfg: ReportConfig
) -> Attention:
    """Attention heat-map data for :func:`attention_customers`; a note instead for an encoder without attention."""
    encoder = model.network.encoder
    if not isinstance(encoder, SequenceEncoder):
        return Attention(note=f"the {type(encoder).__name__} has no attention to show", customers=())
    chosen = attention_customers(predictions, cfg.attention_customers)
    samples = attention_samples(encoder, model.vocab, window, chosen, cfg.attention_events)
    shown = [c for c in ("churn_probability", "clv_expected", "segment") if c in predictions.columns]
    ids = predictions["customer_id"].astype(str)
    picked = ids.isin(chosen)
    by_id = predictions.loc[picked, shown].set_index(ids[picked])
    customers = tuple(
        AttentionSample.from_json({**s, **{c: by_id.at[s["customer_id"], c] for c in shown}}) for s in samples
    )
    return Attention(layers=encoder.cfg.n_layers, customers=customers)


def profit_of(
    simulation: ProfitSimulation,
    cfg: ProfitConfig,
    by_save_rate: dict[float, tuple[int, float]] | None = None,
    points: int = PROFIT_POINTS,
) -> Profit:
    """The profit curve (at most ``points`` values of k, always with each best k), its best k and parameters, and
    the contact list's size and gain at other save rates."""
    curve = simulation.curve
    keep = set(np.unique(np.linspace(0, len(curve) - 1, min(points, len(curve))).round().astype(int)).tolist())
    keep |= {b.k for b in simulation.best.values()}
    thin = curve.iloc[sorted(keep)]
    return Profit(
        parameters=cfg,
        customers=len(curve) - 1,
        curve=ProfitCurve(**{c: tuple(thin[c].tolist()) for c in thin.columns}),
        best={ordering: ProfitBest(k=b.k, profit=b.profit) for ordering, b in simulation.best.items()},
        contacts_by_save_rate=(
            {f"{rate:g}": ProfitBest(k=k, profit=gain) for rate, (k, gain) in by_save_rate.items()}
            if by_save_rate
            else None
        ),
    )
