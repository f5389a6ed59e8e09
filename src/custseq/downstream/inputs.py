"""What a head reads about each customer as of a date: custseq's embedding and the window's rich features.

Both come from rows before the cutoff only (the midnight after the as-of date): the data are validated and
turned into one unlabelled window exactly as ``custseq score`` does (:func:`prepare_scoring_sequences`), so a
head fitted here sees the same inputs as the head applied to a scored run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig
from custseq.errors import SchemaError
from custseq.io.atomic import work_folder
from custseq.io.prepared import WindowFolder
from custseq.io.tables import Tables
from custseq.models.finetune import ChurnValueModel, score_window
from custseq.pipelines.prepare import ScoringSequences, prepare_scoring_sequences


@dataclass(frozen=True)
class CustomerInputs:
    """Every customer with history before the cutoff: ids (text, sorted), embeddings and features, row-aligned."""

    customer_ids: list[str]
    embeddings: np.ndarray  # (N, D) float32
    features: pa.Table  # N rows: customer_id and the window's feature columns
    as_of: dt.date  # inclusive: rows up to the end of this day were read
    unknown_values: dict[str, int]  # values the model's vocabulary does not know, per field

    def rows_of(self, customer_ids: list[str] | tuple[str, ...]) -> np.ndarray:
        """Positions of ``customer_ids`` (each must be present)."""
        index = {c: i for i, c in enumerate(self.customer_ids)}
        return np.array([index[c] for c in customer_ids], dtype=np.int64)


def customer_inputs(
    model: ChurnValueModel, data_cfg: RunConfig, tables: Tables, as_of: dt.date | None
) -> CustomerInputs:
    """Embeddings and features of every customer with a transaction before the cutoff of ``as_of``.

    ``as_of`` None: the last day in the data (its next midnight is the cutoff).

    Raises
    ------
    CustseqError
        On any input problem (``custseq score`` raises the same).
    """
    with work_folder("head") as tmp:
        scoring = _prepare(model, data_cfg, tables, as_of, tmp)
        scores = score_window(model, WindowFolder(tmp))
        features = pq.read_table(WindowFolder(tmp).features)
    aligned = align_features(features, scores.customer_ids)
    return CustomerInputs(
        list(scores.customer_ids), scores.embeddings.astype(np.float32), aligned, scoring.window.as_of,
        dict(scoring.unknown_values),
    )  # fmt: skip


def window_features(model: ChurnValueModel, data_cfg: RunConfig, tables: Tables, as_of: dt.date | None) -> pa.Table:
    """The rich features of every customer as ``custseq score`` builds them for the same data and as-of date."""
    with work_folder("head") as tmp:
        _prepare(model, data_cfg, tables, as_of, tmp)
        return pq.read_table(WindowFolder(tmp).features)


def align_features(features: pa.Table, customer_ids: list[str] | tuple[str, ...]) -> pa.Table:
    """The feature rows of ``customer_ids``, in that order.

    Raises
    ------
    SchemaError
        If a customer has no feature row (the window was built from other data).
    """
    index = {str(c): i for i, c in enumerate(features.column("customer_id").to_pylist())}
    missing = [c for c in customer_ids if str(c) not in index]
    if missing:
        raise SchemaError(
            f"{len(missing)} customer(s) have no features as of this date (e.g. {missing[:3]}); score the run "
            "with the same data it was scored with"
        )
    return features.take(pa.array([index[str(c)] for c in customer_ids], pa.int64()))


def embedding_matrix(embeddings: pd.DataFrame, customer_ids: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, D) float32 rows of a run's embeddings.parquet frame (``customer_id``, ``e0`` … ``e{D-1}``) for ids."""
    columns = [c for c in embeddings.columns if c != "customer_id"]
    by_id = embeddings.assign(customer_id=embeddings["customer_id"].astype(str)).set_index("customer_id")
    return by_id.loc[list(customer_ids), columns].to_numpy(dtype=np.float32)


def _prepare(
    model: ChurnValueModel, data_cfg: RunConfig, tables: Tables, as_of: dt.date | None, folder: Path
) -> ScoringSequences:
    window = dataclasses.replace(data_cfg.window, horizon_days=model.horizon_days, as_of=as_of)
    cfg = dataclasses.replace(data_cfg, window=window)
    population = model.predictor.btyd_fit if model.predictor is not None else None
    return prepare_scoring_sequences(
        tables, cfg, folder, vocab=model.vocab, with_features=True,
        btyd_fit=population.record() if population is not None else None,
    )  # fmt: skip
