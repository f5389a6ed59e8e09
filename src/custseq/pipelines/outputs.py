"""From one window's scores to what a user gets: p_alive, segments, value scores, profit, plans, and the files.

:func:`score_outputs` is shared by ``predict`` and ``score``: it adds every derived column to the scores and,
given a folder, writes predictions.parquet/.csv, embeddings.parquet, metrics.json, review.csv, profit.json and
attention.json.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.baselines.btyd import SUMMARY_COLUMNS, BgNbdParams, BtydFit, BtydPredictions, predict_btyd
from custseq.config import ActionConfig, RunConfig
from custseq.errors import TrainingError
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import (
    ActionSettings,
    Attention,
    BgNbdFit,
    ItemLevelInfo,
    ItemMixtureInfo,
    Metrics,
    PAliveUnavailable,
    RunFolder,
    ValueScore,
)
from custseq.models.finetune import ChurnValueModel, WindowScores, score_window
from custseq.models.next_event import ItemMixture, item_field
from custseq.models.predictor import Predictor
from custseq.models.pretrain import PretrainModel
from custseq.models.side_by_side import side_by_side
from custseq.pipelines.diagnostics import attention_of, profit_of, review_table
from custseq.scoring.actions import catalogue_name, load_catalogue, plan_actions, text_column
from custseq.scoring.contacts import ContactList, contact_list, save_rate_sensitivity
from custseq.scoring.decisions import with_decision_columns
from custseq.scoring.item_level import ItemLevel, next_items_for_plans
from custseq.scoring.lapse import CADENCE_COLUMNS, cadence, decision_churn
from custseq.scoring.products import Products, load_products
from custseq.scoring.profit import ProfitSimulation, retained_value, simulate_retention
from custseq.scoring.scores import ENGAGEMENT_COLUMN, score_spread, value_score_formula, value_scores
from custseq.scoring.segments import FEATURE_COLUMNS, assign_segments
from custseq.sequences.vocab import SequenceVocab

PAST_SPEND_COLUMN = "spend_last_365d"  # the past year's spend, for the value a contact keeps
# What the derived columns read of a window's features: BG/NBD's summary, segments, cadence, the value score's
# engagement and the past year's spend. Read alone, a million customers' features take a tenth of the memory.
SCORING_FEATURES = tuple(
    dict.fromkeys((*SUMMARY_COLUMNS, *FEATURE_COLUMNS, *CADENCE_COLUMNS, ENGAGEMENT_COLUMN, PAST_SPEND_COLUMN))
)


class Scorer(Protocol):
    """What the derived columns need of whatever made the scores: a fitted model, or BG/NBD alone."""

    horizon_days: int  # the trained horizon (segments read it as a span of history)
    vocab: SequenceVocab
    predictor: Predictor | None

    @property
    def output_horizon_days(self) -> int: ...


@dataclass
class BtydOnly:
    """BG/NBD + Gamma-Gamma alone, when no labelled window fits before the as-of date (no model to save)."""

    horizon_days: int
    vocab: SequenceVocab
    predictor: Predictor | None = None

    @property
    def output_horizon_days(self) -> int:
        return self.horizon_days


def btyd_scores(btyd: BtydPredictions) -> WindowScores:
    """BG/NBD + Gamma-Gamma as the score columns, sorted by customer id. Without labels there is no interval to
    calibrate: P10/P50/P90 are 0 where BG/NBD puts at least that chance on no purchase, and unknown (NaN) above."""
    order = np.argsort(np.asarray(btyd.customer_ids, dtype=object), kind="stable")
    churn = np.clip(btyd.churn_probability[order], 1e-6, 1 - 1e-6)
    value = np.clip(btyd.value[order], 0, None)
    columns = {"churn_probability": churn, "clv_expected": value}
    for q in (10, 50, 90):
        columns[f"clv_p{q}"] = np.where(churn >= q / 100, 0.0, np.nan)
    columns["clv_if_active"] = value / np.clip(1 - churn, 0.05, None)
    ids = [btyd.customer_ids[i] for i in order]
    return WindowScores(ids, columns, np.zeros((len(ids), 0), dtype=np.float32))


@dataclass
class ItemProposer:
    """What proposes the plans' next items: the pre-trained next-event head, mixed with each customer's own
    recent items as fitted on the latest training window (:func:`custseq.models.next_event.fit_item_mixture`),
    at the level (products or their categories) decided there (:mod:`custseq.scoring.item_level`)."""

    model: PretrainModel
    mixture: ItemMixture | None = None
    level: ItemLevel | None = None


@dataclass(frozen=True)
class ProposedItems:
    """The plans' next items: each customer's ``next_items`` JSON by customer id, the level they are at, and the
    products table they were proposed with (the plans name and exclude its products too)."""

    by_id: dict[str, str]
    level: ItemLevel
    products: Products | None


@dataclass
class PredictRun:
    """What ``predict`` or ``score`` produced.

    ``predictions`` and ``embeddings`` are held, or (None when made) read from ``out_dir`` on first use: a
    ``score`` into a folder writes them block by block and never holds them (:mod:`custseq.pipelines.shards`).
    """

    held_predictions: pd.DataFrame | None  # one row per customer with history at the as-of date
    held_embeddings: pd.DataFrame | None
    metrics: Metrics  # metrics.json
    out_dir: Path | None
    model: ChurnValueModel | None  # None: BG/NBD + Gamma-Gamma alone (no labelled window fitted)
    data_config: RunConfig
    as_of: str
    proposer: ItemProposer | None = None  # what proposes the plans' next items (None: catalogue actions only)
    contacts: ContactList | None = None  # whom to contact first, and why (contacts.csv)
    prospects: pd.DataFrame | None = None  # people with events and no purchase yet, scored (prospects.csv)

    @property
    def predictions(self) -> pd.DataFrame:
        if self.held_predictions is None:
            self.held_predictions = self._written().read_predictions()
        return self.held_predictions

    @property
    def embeddings(self) -> pd.DataFrame:
        if self.held_embeddings is None:
            self.held_embeddings = self._written().read_embeddings()
        return self.held_embeddings

    def prediction_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of :attr:`predictions`, read alone from the file when the predictions are not held."""
        if self.held_predictions is not None:
            return self.held_predictions[list(columns)]
        return self._written().read_prediction_columns(columns)

    def _written(self) -> RunFolder:
        if self.out_dir is None:
            raise ValueError("this run holds no predictions and wrote none")
        return RunFolder(self.out_dir)


@dataclass(frozen=True)
class ScoredCustomers:
    """Every scored customer's columns, and how the derived ones were made (parts of metrics.json)."""

    predictions: pd.DataFrame  # scores, p_alive, segment, value_score, contact_profit, plans
    embeddings: pa.Table
    review: pd.DataFrame  # customers for a human look
    profit: ProfitSimulation
    p_alive: BgNbdFit | PAliveUnavailable
    value_score: ValueScore
    actions: ActionSettings
    contacts: ContactList  # contacts.csv: whom to contact first, and why

    @property
    def customers(self) -> int:
        return len(self.predictions)

    def metrics_fields(self) -> dict[str, Any]:
        """The parts of metrics.json these columns were made with (predict, score and BTYD alone alike)."""
        return derived_metrics(self.p_alive, self.value_score, self.actions, self.review)


def derived_metrics(
    p_alive: BgNbdFit | PAliveUnavailable, value_score: ValueScore, actions: ActionSettings, review: pd.DataFrame
) -> dict[str, Any]:
    """The parts of metrics.json the derived columns were made with, held or written shard by shard."""
    return {"p_alive": p_alive, "value_score": value_score, "actions": actions, "review_customers": len(review)}


def score_customers(
    scores: WindowScores,
    window: WindowFolder,
    model: Scorer,
    cfg: RunConfig,
    proposer: ItemProposer | None,
    *,
    integer_ids: bool = False,
    proposed: ProposedItems | None = None,
) -> ScoredCustomers:
    """The scores with every derived column: P(alive), segment, value score, contact profit and plans.

    custseq works with customer ids as text; with ``integer_ids`` (the user's ids are integers) every output
    gives them back as integers, in numeric order (1, 2, 10 rather than "1", "10", "2"). ``proposed``: the
    plans' next items made already (:func:`scores_and_items`); None: proposed here when ``proposer`` can."""
    return score_customers_of(
        scores, scoring_features(window), window, model, cfg, proposer, integer_ids=integer_ids, proposed=proposed
    )


def scoring_features(window: WindowFolder) -> pa.Table:
    """The columns of a window's features that the derived columns read (:data:`SCORING_FEATURES`)."""
    present = set(pq.read_schema(window.features).names)
    return pq.read_table(window.features, columns=[c for c in SCORING_FEATURES if c in present])


def score_customers_of(
    scores: WindowScores,
    feature_table: pa.Table,
    window: WindowFolder | None,
    model: Scorer,
    cfg: RunConfig,
    proposer: ItemProposer | None,
    *,
    integer_ids: bool = False,
    proposed: ProposedItems | None = None,
) -> ScoredCustomers:
    """:func:`score_customers` with the window's features in memory; ``window`` (its sequences) is read only when
    the plans propose next items (:func:`plans_read_sequences`), and may be None otherwise."""
    derived = derived_columns(scores.table(), feature_table, model, cfg)
    frame, actions = with_plans(derived.frame, proposer, model.vocab, window, cfg, proposed)
    scored = ScoredCustomers(
        frame, scores.embedding_table(), review_of(frame, derived, cfg), derived.simulation, derived.p_alive,
        value_score_record(frame, cfg), actions, contacts_of(frame, derived, cfg),
    )  # fmt: skip
    return with_integer_ids(scored) if integer_ids else scored


@dataclass(frozen=True)
class DerivedColumns:
    """Every scored customer's columns before the plans, and what the review, contacts and profit are made of."""

    frame: pd.DataFrame  # scores, p_alive, lapsed_regular, segment, value_score, contact_profit
    btyd: BtydPredictions | None  # BG/NBD's own predictions (the review compares them), None if not fitted
    p_alive: BgNbdFit | PAliveUnavailable
    rhythm: pd.DataFrame  # per row: purchase days, usual gap, silence, lapsed regular, last year's spend
    decision: np.ndarray  # the churn probability the decisions use (lapsed regulars at their measured rate)
    kept: np.ndarray  # the value over the horizon if retained
    simulation: ProfitSimulation
    lapsed_churn_rate: float | None


def derived_columns(scores: pa.Table, feature_table: pa.Table, model: Scorer, cfg: RunConfig) -> DerivedColumns:
    """P(alive), lapse, segment, value score and contact profit of every scored customer (``scores``: one row
    per customer, in customer order) from the window's :data:`SCORING_FEATURES`."""
    features = feature_table.to_pandas()
    population = model.predictor.btyd_fit if model.predictor is not None else None
    btyd, p_alive = _btyd(feature_table, model.output_horizon_days, population)
    frame = with_p_alive(scores, btyd).to_pandas()
    rhythm = customer_cadence(frame, features, cfg)
    frame["lapsed_regular"] = rhythm["lapsed_regular"].to_numpy()
    # segments read the horizon as a span of history ("new" = first purchase within it): the trained one, which
    # fits inside the history, also when the predictions are carried to a longer one
    frame = with_segments_and_value_score(frame, features, cfg, model.horizon_days)
    rate = model.predictor.lapsed_churn_rate if model.predictor is not None else None
    decision = decision_churn(frame["churn_probability"].to_numpy(float), frame["lapsed_regular"].to_numpy(bool), rate)
    past = past_rate_value(rhythm, model.output_horizon_days)
    simulation = simulate_retention(frame.assign(churn_probability=decision), cfg.profit, past)
    frame["contact_profit"] = simulation.contact_profit
    kept = retained_value(decision, frame["clv_expected"], cfg.profit, frame.get("clv_if_active"), past)
    return DerivedColumns(frame, btyd, p_alive, rhythm, decision, kept, simulation, rate)


def with_integer_ids(scored: ScoredCustomers) -> ScoredCustomers:
    """Every output's ``customer_id`` as int64; predictions and embeddings sorted by it (the contact and review
    lists keep their own order, best first)."""
    predictions = as_integer_ids(scored.predictions).sort_values("customer_id", kind="stable", ignore_index=True)
    embeddings = pa.Table.from_pandas(as_integer_ids(scored.embeddings.to_pandas()), preserve_index=False)
    embeddings = embeddings.sort_by("customer_id")
    contacts = dataclasses.replace(scored.contacts, contacts=as_integer_ids(scored.contacts.contacts))
    return dataclasses.replace(
        scored, predictions=predictions, embeddings=embeddings, review=as_integer_ids(scored.review), contacts=contacts
    )


def as_integer_ids(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(customer_id=frame["customer_id"].astype("int64"))


def review_of(frame: pd.DataFrame, derived: DerivedColumns, cfg: RunConfig) -> pd.DataFrame:
    """review.csv: the customers on whom custseq and BG/NBD disagree most, with columns for a decision."""
    return with_decision_columns(review_table(frame, derived.btyd, cfg.audit))


def contacts_of(frame: pd.DataFrame, derived: DerivedColumns, cfg: RunConfig) -> ContactList:
    """contacts.csv (flagged and worth a contact, with reasons) and its save-rate band; ``frame``: the derived
    columns with the plans (``retention_flag``, and ``next_actions`` where a contact is chosen)."""
    contacts = contact_list(frame, derived.rhythm, derived.decision, derived.kept, derived.lapsed_churn_rate)
    flagged = frame["retention_flag"].to_numpy(bool)
    band = save_rate_sensitivity(flagged, derived.decision, derived.kept, cfg.profit)
    return dataclasses.replace(contacts, by_save_rate=band)


def value_score_record(frame: pd.DataFrame, cfg: RunConfig) -> ValueScore:
    """metrics.json's value score: the formula, its parameters and how well the scores spread customers."""
    spread = score_spread(frame["value_score"], frame["clv_expected"])
    return ValueScore(
        formula=value_score_formula(cfg.value_score), parameters=cfg.value_score, modal_share=spread.modal_share,
        rank_correlation_with_value=_finite_or_none(spread.rank_correlation_with_value),
    )  # fmt: skip


def write_scored(
    folder: RunFolder,
    scored: ScoredCustomers,
    metrics: Metrics,
    model: Scorer,
    window: WindowFolder,
    cfg: RunConfig,
) -> None:
    """predictions.parquet/.csv, embeddings.parquet, metrics.json, review.csv, profit.json and attention.json."""
    folder.write_predictions(scored.predictions)
    folder.write_embeddings(scored.embeddings)
    folder.write_metrics(metrics)
    folder.write_review(scored.review)
    folder.write_contacts(scored.contacts.contacts)
    folder.write_profit(profit_of(scored.profit, cfg.profit, scored.contacts.by_save_rate))
    if isinstance(model, ChurnValueModel):
        folder.write_attention(attention_of(model, window, scored.predictions, cfg.report))
    else:
        folder.write_attention(Attention(note="BG/NBD + Gamma-Gamma alone: no sequence model to show", customers=()))


def _btyd(
    features: pa.Table, horizon_days: int, population: BtydFit | None = None
) -> tuple[BtydPredictions | None, BgNbdFit | PAliveUnavailable]:
    """BG/NBD + Gamma-Gamma on the window's RFM summary (rows before its cutoff), or the saved model's
    ``population`` fit, and the fit or why it failed."""
    try:
        btyd = predict_btyd(features, horizon_days, fit=population)
    except TrainingError as e:
        return None, PAliveUnavailable(reason=str(e))
    params = btyd.params
    if not isinstance(params, BgNbdParams):
        raise TrainingError(f"P(alive) comes from BG/NBD; got {type(params).__name__}")
    note = None
    if params.a < 1e-6:  # the fit found no dropout process: every P(alive) is ~1 and says nothing
        note = "BG/NBD found no dropout (a ~ 0) on these data; p_alive is ~1 for everyone"
    fit = BgNbdFit(model="BG/NBD", penalizer=btyd.penalizer, **vars(params), note=note)
    return btyd, fit


def with_p_alive(predictions: pa.Table, btyd: BtydPredictions | None) -> pa.Table:
    """Add ``p_alive``: P(alive) from BG/NBD (:func:`_btyd`); empty where BG/NBD could not be fitted."""
    if btyd is None:
        return predictions.append_column("p_alive", pa.nulls(predictions.num_rows, pa.float64()))
    by_id = dict(zip(btyd.customer_ids, btyd.p_alive.tolist(), strict=True))
    column = pa.array([by_id.get(c) for c in predictions.column("customer_id").to_pylist()], pa.float64())
    return predictions.append_column("p_alive", column)


def scores_and_items(
    model: ChurnValueModel, window: WindowFolder, proposer: ItemProposer | None, cfg: RunConfig
) -> tuple[WindowScores, ProposedItems | None]:
    """The network's scores of a window's customers and their plans' next items, the two forward passes side by
    side (:func:`custseq.models.side_by_side.side_by_side`)."""
    if not plans_read_sequences(proposer, model.vocab, cfg):
        return score_window(model, window), None
    return side_by_side(
        lambda: score_window(model, window), lambda: propose_for_plans(proposer, model.vocab, window, cfg)
    )


def plans_read_sequences(proposer: ItemProposer | None, vocab: SequenceVocab, cfg: RunConfig) -> bool:
    """Whether :func:`with_plans` proposes next items, which it reads from the window's sequence files."""
    return proposer is not None and item_field(vocab, cfg.actions.item_field) is not None


def propose_for_plans(
    proposer: ItemProposer | None, vocab: SequenceVocab, window: WindowFolder | None, cfg: RunConfig
) -> ProposedItems | None:
    """Every customer's next items for the plans, or None when the plans hold catalogue actions only (no item
    field, or no pre-trained next-event head: :func:`plans_read_sequences`)."""
    a = cfg.actions
    field = item_field(vocab, a.item_field)
    if proposer is None or field is None:
        return None
    return _proposed_items(proposer, vocab, window, field, a, products_of(a))


def products_of(a: ActionConfig) -> Products | None:
    """The products table of ``[actions] products``, or None without one."""
    return load_products(a.products) if a.products else None


def _proposed_items(
    proposer: ItemProposer,
    vocab: SequenceVocab,
    window: WindowFolder | None,
    field: str,
    a: ActionConfig,
    products: Products | None,
) -> ProposedItems:
    if window is None:
        raise ValueError("the plans propose next items from the window's sequences: pass its folder")
    by_id, level = next_items_for_plans(
        proposer.model, vocab, window, field, a, products, mixture=proposer.mixture, decided=proposer.level
    )
    return ProposedItems(by_id, level, products)


def with_plans(
    predictions: pd.DataFrame,
    proposer: ItemProposer | None,
    vocab: SequenceVocab,
    window: WindowFolder | None,
    cfg: RunConfig,
    proposed: ProposedItems | None = None,
) -> tuple[pd.DataFrame, ActionSettings]:
    """Add ``next_items`` (the proposer's likeliest next items), ``retention_flag`` and ``next_actions``; and
    the settings the plans were made with. ``proposed``: the next items made already (None: made here).

    Without a pre-trained next-event head (pre-training off, or without the next objective) or an item field
    (e.g. CDNOW: no product, category, event or channel), plans hold the catalogue's actions only.
    """
    a = cfg.actions
    field = item_field(vocab, a.item_field)
    products = proposed.products if proposed is not None else products_of(a)  # read once per run
    predictions = predictions.copy()
    items = pa.array(["[]"] * len(predictions), pa.string())
    level = None
    if field is not None and proposer is not None:
        made = proposed or _proposed_items(proposer, vocab, window, field, a, products)
        level = made.level
        items = pa.array([made.by_id.get(c, "[]") for c in predictions["customer_id"].astype(str)], pa.string())
    predictions["next_items"] = text_column([items], predictions.index)
    planned = plan_actions(predictions, a, load_catalogue(a.catalogue), products)
    return planned, plans_settings(proposer, field, level, a)


def plans_settings(
    proposer: ItemProposer | None, field: str | None, level: ItemLevel | None, a: ActionConfig
) -> ActionSettings:
    """metrics.json's ``actions`` of plans made with ``proposer`` on the item field ``field`` (None: the
    vocabulary has none) at ``level`` (None: no items proposed)."""
    note = None
    if field is None:
        note = "no product, category, event or channel field: plans hold catalogue actions only"
    elif proposer is None:
        note = "no pre-trained next-event head (pre-training off or without 'next'): catalogue actions only"
    mixture = proposer.mixture if field is not None and proposer is not None else None
    info = ItemMixtureInfo(**dataclasses.asdict(mixture)) if mixture is not None else None
    level_info = ItemLevelInfo(**dataclasses.asdict(level)) if level is not None else None
    return action_settings(a, field, note=note, item_mixture=info, item_level=level_info)


def action_settings(
    a: ActionConfig,
    item_field: str | None,
    *,
    note: str | None,
    item_mixture: ItemMixtureInfo | None,
    item_level: ItemLevelInfo | None = None,
) -> ActionSettings:
    """metrics.json's ``actions``: the plan settings, the catalogue, and how the next items were proposed."""
    catalogue = catalogue_name(a.catalogue)
    return ActionSettings(
        item_field=item_field, retention_threshold=a.retention_threshold, mode=a.mode, k=a.k, catalogue=catalogue,
        note=note or None, item_mixture=item_mixture, item_level=item_level,
    )  # fmt: skip


def customer_cadence(predictions: pd.DataFrame, features: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """Per row of ``predictions``: purchase days, usual gap, silence, lapsed regular (:mod:`custseq.scoring.lapse`)
    and the spend of the last 365 days (NaN without the recent-window features)."""
    by_id = features.set_index("customer_id")
    rhythm = cadence(by_id, cfg.segments)
    rhythm["spend_last_year"] = by_id.get(PAST_SPEND_COLUMN, np.nan)
    rhythm = rhythm.reindex(predictions["customer_id"].astype(str))
    rhythm["lapsed_regular"] = rhythm["lapsed_regular"].fillna(False).astype(bool)
    return rhythm.reset_index(drop=True)


def with_segments_and_value_score(
    predictions: pd.DataFrame, features: pd.DataFrame, cfg: RunConfig, horizon_days: int
) -> pd.DataFrame:
    """Add ``segment`` (:mod:`custseq.scoring.segments`) and ``value_score`` (:mod:`custseq.scoring.scores`)."""
    predictions = predictions.copy()
    predictions["segment"] = assign_segments(predictions, features, cfg.segments, horizon_days=horizon_days)
    predictions["value_score"] = value_scores(predictions, features, cfg.value_score).to_numpy(dtype=np.float64)
    return predictions


def past_rate_value(rhythm: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Each customer's spend per horizon over the last year (over their history when shorter, but at least one
    horizon); NaN without the recent-window spend features."""
    observed = np.clip(np.minimum(rhythm["history_days"].to_numpy(float), 365.0), horizon_days, None)
    spend = rhythm["spend_last_year"].to_numpy(float)
    return np.asarray(spend / observed * horizon_days, dtype=float)


def _finite_or_none(x: float) -> float | None:
    return x if np.isfinite(x) else None


def copy_quarantine(src: Path, dst: Path) -> None:
    """The quarantine files of a work folder, copied to the outputs."""
    if src.exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)
