"""Scoring a window shard by shard and writing its results block by block: ``score`` and ``predict`` into a folder.

1. The window's features (and labels, when it has them: ``predict``'s back-test) are split by sequence shard, once
   (DuckDB, out of core): each shard becomes a window folder of its own, its sequence file and its customers'
   features and labels (:func:`shard_windows`).
2. First pass, one shard at a time (:func:`score_shards`): the network's scores and embeddings and the plans'
   next items, the two forward passes side by side. The embeddings and next items go to part files at once; the
   scores stay, a few numbers per customer.
3. The derived columns of every customer from those numbers and the window's scoring features
   (:func:`custseq.pipelines.outputs.derived_columns`): they rank a customer among all (top value tier, value
   score), choose the review list and the contacts, and total the profit.
4. Second pass, in the output's customer order, :data:`WRITE_ROWS` customers at a time (:func:`write_results`):
   the next items read back in that order (DuckDB joins the parts to the order, out of core), the plans, and
   predictions.parquet/.csv appended; embeddings.parquet likewise from its parts.

So no step holds every customer's sequences, features, embeddings or plans; what is held is each customer's id and
a few dozen numbers. The numbers are those of :func:`custseq.pipelines.outputs.score_customers`, which holds them all:
the network batches each shard's file as it does, and every column is made by the same functions from the same
inputs (tested on several shards).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import ActionConfig, RunConfig
from custseq.io.blocks import exact_blocks
from custseq.io.engine import connect
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import WRITE_ROWS, ActionSettings, BgNbdFit, PAliveUnavailable, RunFolder, ValueScore
from custseq.models.finetune import PREDICTION_COLUMNS, ChurnValueModel, WindowScores, score_window
from custseq.models.next_event import item_field
from custseq.models.side_by_side import side_by_side
from custseq.pipelines.diagnostics import attention_of, profit_of
from custseq.pipelines.outputs import (
    ItemProposer,
    ScoredCustomers,
    as_integer_ids,
    contacts_of,
    derived_columns,
    derived_metrics,
    plans_settings,
    products_of,
    review_of,
    score_customers,
    scores_and_items,
    scoring_features,
    value_score_record,
)
from custseq.scoring.actions import load_catalogue, plan_actions, retention_flags, text_column
from custseq.scoring.contacts import ContactList
from custseq.scoring.item_level import ScoringLevel, next_items_at, scoring_level
from custseq.scoring.products import Products
from custseq.scoring.profit import ProfitSimulation
from custseq.sequences.build import SHARD_FILE
from custseq.sequences.vocab import SequenceVocab

NO_ITEMS = "[]"  # next_items of a customer with none proposed


@dataclass(frozen=True)
class FirstPass:
    """What the first pass leaves: every customer's scores (customer order) and the part files of the rest."""

    scores: WindowScores  # every customer's scores (and labels, of a labelled window), no embeddings
    parts: Path  # embeddings-<shard>.parquet and, when the plans propose items, items-<shard>.parquet
    proposed_items: bool  # whether items-<shard>.parquet hold next items (else plans hold catalogue actions only)
    products: Products | None
    actions: ActionSettings  # how the plans are made (metrics.json)


@dataclass(frozen=True)
class WrittenScores:
    """What the second pass wrote, and the parts of metrics.json it was made with."""

    customers: int
    review: pd.DataFrame
    profit: ProfitSimulation
    p_alive: BgNbdFit | PAliveUnavailable
    value_score: ValueScore
    actions: ActionSettings
    contacts: ContactList

    def metrics_fields(self) -> dict[str, Any]:
        return derived_metrics(self.p_alive, self.value_score, self.actions, self.review)


@dataclass(frozen=True)
class WindowScoring:
    """A window scored by :func:`score_window_into`: held, or written to a folder."""

    scores: WindowScores  # the network's scores (and labels, of a labelled window); no embeddings when written
    results: ScoredCustomers | WrittenScores
    predictions: pd.DataFrame | None  # None: written, to be read from the folder
    embeddings: pd.DataFrame | None
    scored_at: float  # time.perf_counter() when the forward passes were done


def score_window_into(
    folder: RunFolder | None,
    model: ChurnValueModel,
    window: WindowFolder,
    proposer: ItemProposer | None,
    cfg: RunConfig,
    *,
    integer_ids: bool,
    scratch: Path,
    between: Callable[[], None] = lambda: None,
) -> WindowScoring:
    """Every customer of ``window`` scored with every derived column: written to ``folder`` shard by shard and
    block by block (work files in ``scratch``, a folder that does not exist yet), or held when there is no
    folder (the frames the caller gets). ``between`` runs between the forward passes and the derived columns (a
    progress stage)."""
    if folder is None:
        scores, proposed = scores_and_items(model, window, proposer, cfg)
        done = time.perf_counter()
        between()
        held = score_customers(scores, window, model, cfg, proposer, integer_ids=integer_ids, proposed=proposed)
        return WindowScoring(scores, held, held.predictions, held.embeddings.to_pandas(), done)
    first = score_shards(model, window, proposer, cfg, scratch)
    done = time.perf_counter()
    between()
    written = write_results(first, window, model, cfg, folder, integer_ids=integer_ids)
    return WindowScoring(first.scores, written, None, None, done)


LABEL_PREFIX = "_custseq_label_"  # the labels' columns beside the features while they are split


def shard_windows(window: WindowFolder, root: Path, cfg: RunConfig) -> list[WindowFolder]:
    """One window folder per sequence shard of ``window``, in shard order, under ``root``: the shard's sequence
    file (a hard link where the file system allows one) and the features, and labels when the window has them, of
    its customers (one DuckDB pass over them all)."""
    shards = sorted((p for p in window.sequences.iterdir() if p.is_dir()), key=_shard_number)
    features = pq.read_schema(window.features)
    labels = pq.read_schema(window.labels) if window.has_labels else None
    split = root / "split"
    root.mkdir(parents=True, exist_ok=True)
    _split_by_shard(window, labels, split, cfg)
    views = []
    for shard in shards:
        view = WindowFolder(root / shard.name)
        (view.sequences / "shard=0").mkdir(parents=True)
        _link_or_copy(shard / SHARD_FILE, view.sequences / "shard=0" / SHARD_FILE)
        _write_features_and_labels(sorted((split / shard.name).glob("*.parquet")), view, features, labels)
        views.append(view)
    shutil.rmtree(split)
    return views


def _write_features_and_labels(
    files: list[Path], view: WindowFolder, features: pa.Schema, labels: pa.Schema | None
) -> None:
    """One shard's split rows (one file per DuckDB thread; none when no customer of the shard has features) as
    the view's features.parquet and, for a labelled window, labels.parquet, row for row."""
    if labels is None and len(files) == 1:  # the shard's features as they are (DuckDB drops `shard`)
        files[0].rename(view.features)
        return
    both = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    pq.write_table(both.select(features.names) if both is not None else features.empty_table(), view.features)
    if labels is None:
        return
    names = [LABEL_PREFIX + n if n != "customer_id" else n for n in labels.names]
    kept = both.select(names).rename_columns(labels.names) if both is not None else labels.empty_table()
    pq.write_table(kept, view.labels)


def _split_by_shard(window: WindowFolder, labels: pa.Schema | None, split: Path, cfg: RunConfig) -> None:
    """The window's features (beside its labels, same rows) with each customer's sequence shard, written
    partitioned by shard under ``split``."""
    params = {"features": str(window.features), "sequences": str(window.sequences / "*" / "*.parquet")}
    label_columns, label_join = "", ""
    if labels is not None:
        label_columns = "".join(f', l."{n}" AS "{LABEL_PREFIX}{n}"' for n in labels.names if n != "customer_id")
        label_join = " JOIN read_parquet($labels) l USING (customer_id)"
        params["labels"] = str(window.labels)
    query = (
        f"SELECT f.*{label_columns}, s.shard FROM read_parquet($features) f "
        "JOIN (SELECT customer_id, shard FROM read_parquet($sequences, hive_partitioning = true)) s "
        f"USING (customer_id){label_join}"
    )
    con = connect(cfg.engine)
    try:
        con.sql(query, params=params).write_parquet(str(split), partition_by=["shard"])
    finally:
        con.close()


def _shard_number(folder: Path) -> int:
    return int(folder.name.removeprefix("shard="))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def score_shards(
    model: ChurnValueModel, window: WindowFolder, proposer: ItemProposer | None, cfg: RunConfig, scratch: Path
) -> FirstPass:
    """The first pass over ``window``'s shards (the module's docstring), its files in ``scratch`` (made here)."""
    views = shard_windows(window, scratch / "shards", cfg)
    parts = scratch / "parts"
    parts.mkdir(parents=True)
    products = products_of(cfg.actions)
    field = item_field(model.vocab, cfg.actions.item_field)
    level, propose = None, None
    if proposer is not None and field is not None:
        level = scoring_level(model.vocab, window, field, cfg.actions, products, proposer.level)
        propose = functools.partial(_shard_items, level, proposer, model.vocab, field, cfg.actions, products)
    scores = []
    for number, view in enumerate(views):
        score = functools.partial(score_window, model, view)
        shard_scores, proposed = (
            (score(), None) if propose is None else side_by_side(score, functools.partial(propose, view))
        )
        pq.write_table(shard_scores.embedding_table(), parts / f"embeddings-{number}.parquet")
        if proposed is not None:
            pq.write_table(_items_table(proposed), parts / f"items-{number}.parquet")
        scores.append(dataclasses.replace(shard_scores, embeddings=shard_scores.embeddings[:, :0]))
        shutil.rmtree(view.folder)
    actions = plans_settings(proposer, field, level.level if level is not None else None, cfg.actions)
    return FirstPass(_in_customer_order(scores), parts, propose is not None, products, actions)


def _shard_items(
    level: ScoringLevel,
    proposer: ItemProposer,
    vocab: SequenceVocab,
    field: str,
    actions: ActionConfig,
    products: Products | None,
    view: WindowFolder,
) -> dict[str, str]:
    """One shard's next items, at the level decided on the whole window."""
    return next_items_at(level, proposer.model, vocab, view, field, actions, products, mixture=proposer.mixture)


def _in_customer_order(shards: list[WindowScores]) -> WindowScores:
    """The shards' scores (and labels) as one, sorted by customer id as :func:`score_window` sorts them."""
    ids = [c for s in shards for c in s.customer_ids]
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    names = list(shards[0].columns) if shards else list(PREDICTION_COLUMNS)
    columns = {k: np.concatenate([s.columns[k] for s in shards] or [np.zeros(0)])[order] for k in names}
    labelled = bool(shards) and all(s.churned is not None and s.value is not None for s in shards)
    churned = np.concatenate([cast(np.ndarray, s.churned) for s in shards])[order] if labelled else None
    value = np.concatenate([cast(np.ndarray, s.value) for s in shards])[order] if labelled else None
    return WindowScores([ids[i] for i in order], columns, np.zeros((len(ids), 0), np.float32), churned, value)


def _items_table(by_id: dict[str, str]) -> pa.Table:
    return pa.table({"customer_id": pa.array(list(by_id), pa.string()),
                     "next_items": pa.array(list(by_id.values()), pa.string())})  # fmt: skip


def write_results(
    first: FirstPass,
    window: WindowFolder,
    model: ChurnValueModel,
    cfg: RunConfig,
    folder: RunFolder,
    *,
    integer_ids: bool,
) -> WrittenScores:
    """The derived columns and the second pass (the module's docstring): predictions.parquet/.csv,
    embeddings.parquet, review.csv, contacts.csv, profit.json and attention.json in ``folder``.

    ``integer_ids``: the user's ids are integers; the files give them back as integers, in numeric order."""
    derived = derived_columns(first.scores.table(), scoring_features(window), model, cfg)
    frame = derived.frame  # in customer order, ids as text, as every derived column was made
    flagged = retention_flags(frame, cfg.actions)
    chosen = flagged & (frame["contact_profit"].to_numpy(dtype=float) > 0)  # contact_list's choice
    order = _output_order(frame["customer_id"], integer_ids)
    chosen_actions = np.full(len(frame), NO_ITEMS, dtype=object)  # contacts.csv reads the chosen ones' plans
    order_file = first.parts / "order.parquet"
    pq.write_table(pa.table({"customer_id": frame["customer_id"].to_numpy()[order], "position": np.arange(len(order))}),
                   order_file)  # fmt: skip
    catalogue = load_catalogue(cfg.actions.catalogue)
    with folder.predictions_writer() as writer, _items_in_order(first, order_file, cfg) as items:
        for start in range(0, max(len(order), 1), WRITE_ROWS):
            rows = order[start : start + WRITE_ROWS]
            block = frame.iloc[rows].reset_index(drop=True)
            block["next_items"] = _next_items(items, block["customer_id"])
            planned = plan_actions(block, cfg.actions, catalogue, first.products)
            picked = chosen[rows]
            chosen_actions[rows[picked]] = planned["next_actions"].to_numpy()[picked]
            writer.write(as_integer_ids(planned) if integer_ids else planned)
    with _embeddings_in_order(first, order_file, cfg, integer_ids) as embeddings:
        folder.write_embeddings_from(embeddings)
    planned_frame = frame.assign(retention_flag=flagged, next_actions=chosen_actions)
    review, contacts = review_of(frame, derived, cfg), contacts_of(planned_frame, derived, cfg)
    if integer_ids:
        review = as_integer_ids(review)
        contacts = dataclasses.replace(contacts, contacts=as_integer_ids(contacts.contacts))
    shown = frame[["customer_id", "churn_probability", "clv_expected", "segment"]].iloc[order].reset_index(drop=True)
    folder.write_review(review)
    folder.write_contacts(contacts.contacts)
    folder.write_profit(profit_of(derived.simulation, cfg.profit, contacts.by_save_rate))
    folder.write_attention(attention_of(model, window, as_integer_ids(shown) if integer_ids else shown, cfg.report))
    return WrittenScores(
        len(frame), review, derived.simulation, derived.p_alive, value_score_record(frame, cfg), first.actions, contacts
    )


def _output_order(ids: pd.Series, integer_ids: bool) -> np.ndarray:
    """Positions of the customer-ordered rows in the files' order: the same, or by the ids' numbers."""
    if not integer_ids:
        return np.arange(len(ids))
    return np.argsort(ids.astype("int64").to_numpy(), kind="stable")


@contextlib.contextmanager
def _items_in_order(first: FirstPass, order_file: Path, cfg: RunConfig) -> Iterator[Iterator[pa.Table] | None]:
    """The next items in the files' order, :data:`WRITE_ROWS` customers at a time (None: none proposed)."""
    files = sorted(first.parts.glob("items-*.parquet"))
    if not first.proposed_items or not files:
        yield None
        return
    query = (
        "SELECT o.customer_id, coalesce(i.next_items, $none) AS next_items FROM read_parquet($order) o "
        "LEFT JOIN read_parquet($items) i USING (customer_id) ORDER BY o.position"
    )
    params = {"order": str(order_file), "items": [str(f) for f in files], "none": NO_ITEMS}
    with _ordered(query, params, cfg) as batches:
        yield exact_blocks(batches, WRITE_ROWS)


@contextlib.contextmanager
def _embeddings_in_order(
    first: FirstPass, order_file: Path, cfg: RunConfig, integer_ids: bool
) -> Iterator[pa.RecordBatchReader]:
    """The embeddings in the files' order, their ids as integers with ``integer_ids``."""
    files = [str(f) for f in sorted(first.parts.glob("embeddings-*.parquet"))]
    columns = [n for n in pq.read_schema(files[0]).names if n != "customer_id"]
    key = "CAST(e.customer_id AS BIGINT)" if integer_ids else "e.customer_id"
    selected = ", ".join([f"{key} AS customer_id", *(f'e."{c}"' for c in columns)])
    query = (
        f"SELECT {selected} FROM read_parquet($order) o JOIN read_parquet($embeddings) e USING (customer_id) "
        "ORDER BY o.position"
    )
    with _ordered(query, {"order": str(order_file), "embeddings": files}, cfg) as batches:
        yield batches


@contextlib.contextmanager
def _ordered(query: str, params: dict[str, Any], cfg: RunConfig) -> Iterator[pa.RecordBatchReader]:
    con = connect(cfg.engine)
    try:
        yield con.sql(query, params=params).to_arrow_reader(WRITE_ROWS)
    finally:
        con.close()


def _next_items(items: Iterator[pa.Table] | None, ids: pd.Series) -> pd.Series:
    """The next block of next items, checked to be the block's customers'."""
    if items is None:
        return text_column([pa.array([NO_ITEMS] * len(ids), pa.string())], ids.index)
    block = next(items, None) if len(ids) else None
    got = [] if block is None else block.column("customer_id").to_pylist()
    if got != ids.astype(str).tolist():
        raise RuntimeError("the next items read back are not in the order of the predictions; please report this")
    chunks = [] if block is None else block.column("next_items").chunks
    return text_column(chunks, ids.index)
