"""From one window's scores to what a user gets: p_alive, segments, value scores, profit, plans, and the files.

:func:`score_outputs` is shared by ``predict`` and ``score``: it adds every derived column to the scores and,
given a folder, writes predictions.parquet/.csv, embeddings.parquet, metrics.json, review.csv, profit.json and
attention.json.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custseq.baselines.btyd import BtydPredictions, predict_btyd
from custseq.config import ActionConfig, RunConfig
from custseq.errors import TrainingError
from custseq.io.prepared import WindowFolder
from custseq.models.finetune import ChurnValueModel, WindowScores
from custseq.models.next_event import ItemMixture, item_field, propose_next
from custseq.models.pretrain import PretrainModel
from custseq.pipelines.diagnostics import attention_json, profit_json, review_table, write_json
from custseq.scoring.actions import load_catalogue, next_items_column, plan_actions
from custseq.scoring.profit import simulate_retention
from custseq.scoring.scores import value_score_formula, value_scores
from custseq.scoring.segments import assign_segments
from custseq.sequences.vocab import SequenceVocab


@dataclass
class ItemProposer:
    """What proposes the plans' next items: the pre-trained next-event head, mixed with each customer's own
    recent items as fitted on the latest training window (:func:`custseq.models.next_event.fit_item_mixture`)."""

    model: PretrainModel
    mixture: ItemMixture | None = None


@dataclass
class PredictRun:
    """What ``predict`` or ``score`` produced."""

    predictions: pd.DataFrame  # one row per customer with history at the as-of date
    embeddings: pd.DataFrame
    metrics: dict[str, Any]  # metrics.json
    out_dir: Path | None
    model: ChurnValueModel
    data_config: RunConfig
    as_of: str
    proposer: ItemProposer | None = None  # what proposes the plans' next items (None: catalogue actions only)


def score_outputs(
    scores: WindowScores,
    window: WindowFolder,
    metrics: dict[str, Any],
    model: ChurnValueModel,
    cfg: RunConfig,
    as_of: str,
    out: Any,
    proposer: ItemProposer | None,
) -> PredictRun:
    """Predictions with every derived column from the scoring ``window`` folder; ``out`` receives the outputs."""
    feature_table = pq.read_table(window.features)
    btyd = _btyd(feature_table, model.horizon_days, metrics)
    frame = with_p_alive(scores.table(), btyd).to_pandas()
    frame = with_segments_and_value_score(frame, feature_table.to_pandas(), cfg, model.horizon_days)
    metrics["value_score"] = {
        "formula": value_score_formula(cfg.value_score), "parameters": dataclasses.asdict(cfg.value_score)
    }  # fmt: skip
    simulation = simulate_retention(frame, cfg.profit)
    frame["contact_profit"] = simulation.contact_profit
    frame = with_plans(frame, proposer, model.vocab, window, cfg, metrics)
    predictions = pa.Table.from_pandas(frame, preserve_index=False)
    embeddings = scores.embedding_table()
    review = review_table(frame, btyd, cfg.audit)
    metrics["review_customers"] = len(review)
    if out is not None:
        out = Path(out)
        write_outputs(out, predictions, embeddings, metrics)
        review.to_csv(out / "review.csv", index=False)
        write_json(out / "profit.json", profit_json(simulation, cfg.profit))
        write_json(out / "attention.json", attention_json(model, window.folder, frame, cfg.report))
    return PredictRun(frame, embeddings.to_pandas(), metrics, Path(out) if out else None, model, cfg, as_of, proposer)


def _btyd(features: pa.Table, horizon_days: int, metrics: dict[str, Any]) -> BtydPredictions | None:
    """BG/NBD + Gamma-Gamma on the window's RFM summary (rows before its cutoff); None, said in metrics, if it fails."""
    try:
        btyd = predict_btyd(features, horizon_days)
    except TrainingError as e:
        metrics["p_alive"] = f"not available: {e}"
        return None
    metrics["p_alive"] = {"model": "BG/NBD", "penalizer": btyd.penalizer, **vars(btyd.params)}
    if btyd.params.a < 1e-6:  # the fit found no dropout process: every P(alive) is ~1 and says nothing
        metrics["p_alive"]["note"] = "BG/NBD found no dropout (a ~ 0) on these data; p_alive is ~1 for everyone"
    return btyd


def with_p_alive(predictions: pa.Table, btyd: BtydPredictions | None) -> pa.Table:
    """Add ``p_alive``: P(alive) from BG/NBD (:func:`_btyd`); empty where BG/NBD could not be fitted."""
    if btyd is None:
        return predictions.append_column("p_alive", pa.nulls(predictions.num_rows, pa.float64()))
    by_id = dict(zip(btyd.customer_ids, btyd.p_alive.tolist(), strict=True))
    column = pa.array([by_id.get(c) for c in predictions.column("customer_id").to_pylist()], pa.float64())
    return predictions.append_column("p_alive", column)


def with_plans(
    predictions: pd.DataFrame,
    proposer: ItemProposer | None,
    vocab: SequenceVocab,
    window: WindowFolder,
    cfg: RunConfig,
    metrics: dict[str, Any],
) -> pd.DataFrame:
    """Add ``next_items`` (the proposer's likeliest next items), ``retention_flag`` and ``next_actions``.

    Without a pre-trained next-event head (pre-training off, or without the next objective) or an item field
    (e.g. CDNOW: no product, category, event or channel), plans hold the catalogue's actions only.
    """
    a = cfg.actions
    field = item_field(vocab, a.item_field)
    predictions = predictions.copy()
    predictions["next_items"] = "[]"
    note = None
    if field is None:
        note = "no product, category, event or channel field: plans hold catalogue actions only"
    elif proposer is None:
        note = "no pre-trained next-event head (pre-training off or without 'next'): catalogue actions only"
    else:
        items = propose_next(proposer.model, vocab, window.folder, field, a.k, mixture=proposer.mixture)
        by_id = dict(zip(items.customer_ids, next_items_column(items), strict=True))
        predictions["next_items"] = [by_id.get(c, "[]") for c in predictions["customer_id"].astype(str)]
    mixture = proposer.mixture if field is not None and proposer is not None else None
    metrics["actions"] = actions_metrics(
        a, field, note=note, item_mixture=dataclasses.asdict(mixture) if mixture is not None else None
    )
    return plan_actions(predictions, a, load_catalogue(a.catalogue))


def actions_metrics(
    a: ActionConfig, item_field: str | None, *, note: str | None, item_mixture: dict[str, Any] | None
) -> dict[str, Any]:
    """metrics.json's ``actions``: the plan settings, the catalogue, and how the next items were proposed."""
    catalogue = a.catalogue or "the default shipped with custseq (custseq/scoring/data/actions.json)"
    out: dict[str, Any] = {"item_field": item_field, "retention_threshold": a.retention_threshold, "mode": a.mode,
                           "k": a.k, "catalogue": catalogue}  # fmt: skip
    if note:
        out["note"] = note
    if item_mixture is not None:
        out["item_mixture"] = item_mixture
    return out


def with_segments_and_value_score(
    predictions: pd.DataFrame, features: pd.DataFrame, cfg: RunConfig, horizon_days: int
) -> pd.DataFrame:
    """Add ``segment`` (:mod:`custseq.scoring.segments`) and ``value_score`` (:mod:`custseq.scoring.scores`)."""
    predictions = predictions.copy()
    predictions["segment"] = assign_segments(predictions, features, cfg.segments, horizon_days=horizon_days)
    predictions["value_score"] = value_scores(predictions, features, cfg.value_score).to_numpy(dtype=np.float64)
    return predictions


def write_outputs(out: Path, predictions: pa.Table, embeddings: pa.Table, metrics: dict[str, Any]) -> None:
    """predictions.parquet / .csv, embeddings.parquet and metrics.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(predictions, out / "predictions.parquet")
    pacsv.write_csv(predictions, out / "predictions.csv")
    pq.write_table(embeddings, out / "embeddings.parquet")
    write_json(out / "metrics.json", metrics)


def copy_quarantine(src: Path, dst: Path) -> None:
    """The quarantine files of a work folder, copied to the outputs."""
    if src.exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)
