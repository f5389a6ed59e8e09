"""A saved model loaded once and applied to transaction frames: what the MLflow model runs on each request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from custseq.config import RunConfig
from custseq.io.engine import connect
from custseq.io.tables import Tables
from custseq.models.finetune import ChurnValueModel, load_churn_value
from custseq.pipelines.outputs import ItemProposer
from custseq.pipelines.predict import NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.score import load_item_proposer, score_in_memory


@dataclass(frozen=True)
class SavedScorer:
    """A model folder written by ``predict`` (``<out>/model``), loaded with custseq's own safe loaders
    (safetensors + JSON); it scores as ``custseq score --model`` does, with the model's own data settings, in
    memory on a DuckDB connection kept for its calls (:func:`custseq.pipelines.score.score_in_memory`)."""

    model: ChurnValueModel
    data_config: RunConfig
    proposer: ItemProposer | None
    con: duckdb.DuckDBPyConnection

    @classmethod
    def load(cls, model_dir: Path | str) -> SavedScorer:
        """Load the model, its data settings and its next-item proposer.

        Raises
        ------
        ArtifactError
            If the folder is missing, corrupted or not a churn-value model.
        """
        model, saved, _ = load_churn_value(model_dir)
        data_config = saved_data_config(saved["data"])
        proposer = load_item_proposer(Path(model_dir) / NEXT_EVENT_DIR)
        return cls(model, data_config, proposer, connect(data_config.engine))

    def predict(self, transactions: Any, *, as_of: str | None = None) -> pd.DataFrame:
        """predictions.csv's columns, one row per customer with history at ``as_of`` (default: the data's last
        day); ``next_items`` and ``next_actions`` are JSON text, as in predictions.csv (unrounded here)."""
        tables = Tables.of(transactions)
        run = score_in_memory(self.model, self.data_config, tables, as_of=as_of, proposer=self.proposer, con=self.con)
        return run.predictions
