"""Fit the final predictor (:mod:`custseq.models.predictor`) on a ``prepare`` output and a fine-tuned network."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from custseq.baselines.base import WindowTables
from custseq.config import ModelConfig
from custseq.errors import TrainingError
from custseq.features.matrix import fit_tabular
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import ModelChoice
from custseq.models.finetune import ChurnValueModel, score_window
from custseq.models.predictor import NetworkOutputs, Predictor, TrainingWindow, fit_predictor


def fit_final_predictor(
    prepared: PreparedWindows, model: ChurnValueModel | None, cfg: ModelConfig
) -> tuple[Predictor, ModelChoice]:
    """Choose and fit the final predictor on the training windows; ``model`` None: without the network.

    The network's outputs for the training windows come from ``model`` as fine-tuned (no predictor yet); the
    feature columns are the network's (its tabular spec), or without one those of the training windows.
    """
    if model is not None and model.predictor is not None:
        raise TrainingError("the model already has a predictor")
    horizon = prepared.horizon_days
    folders = latest_windows(list(prepared.training), cfg.predictor.max_training_customers)
    if not folders:
        raise TrainingError("the predictor needs at least one labelled training window")
    tables = [WindowTables.read(f, horizon) for f in folders]
    windows = [TrainingWindow(t, _network(model, f, t)) for f, t in zip(folders, tables, strict=True)]
    spec = model.tabular if model is not None else fit_tabular([t.features for t in tables])
    return fit_predictor(
        windows, spec, cfg.predictor, cfg.finetune, seed=cfg.finetune_training.seed, horizon_days=horizon
    )


def latest_windows(folders: list[WindowFolder], max_customers: int | None) -> list[WindowFolder]:
    """The latest windows (``folders`` is latest first) while their customers stay within ``max_customers``;
    always the latest one."""
    if max_customers is None:
        return folders
    kept: list[WindowFolder] = []
    customers = 0
    for folder in folders:
        n = pq.ParquetFile(folder.features).metadata.num_rows
        if kept and customers + n > max_customers:
            break
        kept.append(folder)
        customers += n
    return kept


def _network(model: ChurnValueModel | None, folder: WindowFolder, tables: WindowTables) -> NetworkOutputs | None:
    """The network's calibrated churn, value and embedding for the window's customers, in its feature order."""
    if model is None:
        return None
    scores = score_window(model, folder)
    index = {c: i for i, c in enumerate(scores.customer_ids)}
    try:
        rows = np.array([index[c] for c in tables.customer_ids], dtype=np.int64)
    except KeyError as e:
        raise TrainingError(f"customer {e} of {folder.folder} has features but no sequence") from None
    c = scores.columns
    return NetworkOutputs(c["churn_probability"][rows], c["clv_expected"][rows], scores.embeddings[rows])
