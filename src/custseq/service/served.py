"""The model a service holds: loaded once at start-up, then scored through the same pipeline as ``custseq score``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import duckdb

from custseq.config import RunConfig
from custseq.io.engine import connect
from custseq.models.artifacts import Manifest
from custseq.models.finetune import ChurnValueModel, load_churn_value
from custseq.pipelines.outputs import ItemProposer, PredictRun
from custseq.pipelines.predict import NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.score import load_item_proposer, refuse_partial_run, score_in_memory
from custseq.schema import CUSTOMERS, EVENTS, TRANSACTIONS
from custseq.service.frames import request_tables
from custseq.service.schemas import ModelInfo, ScoreRequest


@dataclass(frozen=True)
class ServedModel:
    """A saved model in memory with its data settings and next-item proposer (what ``custseq score`` loads), and
    the DuckDB connection its requests are prepared on (each in a session of its own)."""

    path: Path
    model: ChurnValueModel
    data_config: RunConfig
    proposer: ItemProposer | None
    manifest: Manifest
    con: duckdb.DuckDBPyConnection

    @classmethod
    def load(cls, model_dir: Path | str, *, threads: int | None = None) -> ServedModel:
        """Load ``model_dir`` as ``custseq score --model`` does; its DuckDB connection runs ``threads`` threads
        (None: as the model's engine settings say).

        Raises
        ------
        ArtifactError
            If the folder is missing, incomplete or corrupted (checked against its manifest).
        ConfigError
            If its data settings were written by a custseq this version cannot read.
        """
        path = Path(model_dir)
        refuse_partial_run(path)
        model, saved, manifest = load_churn_value(path)
        proposer = load_item_proposer(path / NEXT_EVENT_DIR)
        data_config = saved_data_config(saved["data"])
        engine = data_config.engine if threads is None else dataclasses.replace(data_config.engine, threads=threads)
        return cls(path, model, data_config, proposer, manifest, connect(engine))

    def score(self, request: ScoreRequest) -> PredictRun:
        """The request's customers scored by :func:`custseq.pipelines.score.score_in_memory`, nothing written."""
        tables = request_tables(request)
        return score_in_memory(
            self.model, self.data_config, tables, as_of=request.as_of.isoformat(), proposer=self.proposer, con=self.con
        )

    def info(self, prediction_fields: list[str]) -> ModelInfo:
        m = self.manifest
        return ModelInfo(
            custseq_version=m.custseq_version, model_type=m.model_type, created_at=m.created_at,
            data_fingerprint=m.data_fingerprint, cutoffs=list(m.cutoffs), horizon_days=self.model.output_horizon_days,
            validation_metrics=dict(m.metrics), transaction_fields=list(TRANSACTIONS.names),
            profile_fields=list(CUSTOMERS.names), event_fields=list(EVENTS.names),
            prediction_fields=prediction_fields,
        )  # fmt: skip
