"""A fitted head applied after ``score``: its column(s) added to the scored run's predictions.

A separate step after scoring: it reads the run's embeddings (and, for a head that reads the features, builds
the scoring window's features again from the same data and as-of date) and rewrites predictions.parquet/.csv
through a staging copy of the output folder, so the folder is never half-written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from custseq.config import RunConfig, parse_date
from custseq.downstream.artifacts import load_head
from custseq.downstream.head import FittedHead
from custseq.downstream.inputs import align_features, embedding_matrix, window_features
from custseq.errors import ArtifactError, SchemaError
from custseq.features.matrix import missing_inputs_message
from custseq.io.atomic import staged_output
from custseq.io.run_files import RunFolder
from custseq.io.tables import Tables
from custseq.models.artifacts import read_manifest
from custseq.models.finetune import load_churn_value
from custseq.pipelines.outputs import PredictRun
from custseq.pipelines.predict import saved_data_config


def with_head_columns(
    predictions: pd.DataFrame, head: FittedHead, embeddings: pd.DataFrame, features: pa.Table | None = None
) -> pd.DataFrame:
    """``predictions`` with the head's columns (:meth:`FittedHead.columns`), from the same customers' embeddings
    (a run's embeddings.parquet frame) and, for a head that reads them, the scoring window's features.

    Raises
    ------
    SchemaError
        If the predictions already hold the column, or the features lack a column the head was fitted with.
    ConfigError
        If the head reads features and none are given.
    """
    if head.column in predictions.columns:
        raise SchemaError(f"the predictions already hold a column {head.column!r}; apply each head once")
    ids = predictions["customer_id"].astype(str).tolist()
    matrix = embedding_matrix(embeddings, ids)
    if head.needs_features:
        if features is None:
            raise SchemaError(f"the head {head.column} reads the rich features; pass the scoring window's features")
        missing = [c for c in (*head.inputs.numeric, *head.inputs.categorical) if c not in features.column_names]
        if missing:
            raise SchemaError(missing_inputs_message(missing))
        table = align_features(features, ids)
    else:
        table = pa.table({"customer_id": pa.array(ids, pa.string())})
    return predictions.assign(**head.columns(table, matrix))


def load_heads_for(model_dir: Path | str, head_dirs: Sequence[Path | str]) -> list[FittedHead]:
    """The heads saved by ``fit-head`` in ``head_dirs``, each checked to belong to the model in ``model_dir`` (load
    them before scoring: a wrong head fails at once).

    Raises
    ------
    ArtifactError
        If a head folder is missing or corrupted, or a head was fitted on another model's embeddings.
    """
    weights = read_manifest(Path(model_dir)).weights_sha256
    heads = [load_head(d) for d in head_dirs]
    for folder, head in zip(head_dirs, heads, strict=True):
        if head.model_fingerprint != weights:
            raise ArtifactError(
                f"the head {folder} was fitted on the embeddings of another model (not {model_dir}); fit it again "
                "with --model set to this model"
            )
    return heads


def add_heads(
    run: PredictRun, heads: Sequence[FittedHead], model_dir: Path | str, tables: Tables, config: RunConfig | None
) -> PredictRun:
    """Apply heads (:func:`load_heads_for`) to a run ``score`` wrote with ``model_dir`` on ``tables``; rewrite its
    predictions files when it has an output folder."""
    features = _features(model_dir, tables, config, run.as_of) if any(h.needs_features for h in heads) else None
    predictions = run.predictions
    for head in heads:
        predictions = with_head_columns(predictions, head, run.embeddings, features)
    if run.out_dir is not None:
        record = RunFolder(run.out_dir).read_run()
        with staged_output(run.out_dir, command=record.command, inputs=record.inputs, keep=True) as staging:
            if staging is not None:
                RunFolder(staging).write_predictions(predictions)
    return dataclasses.replace(run, held_predictions=predictions)


def _features(model_dir: Path | str, tables: Tables, config: RunConfig | None, as_of: str) -> pa.Table:
    """The scoring window's features, built again as ``score`` built them (same data, settings and as-of)."""
    model, saved, _ = load_churn_value(model_dir)
    data_cfg = config or saved_data_config(saved["data"])
    return window_features(model, data_cfg, tables, parse_date(as_of, "as-of"))
