"""Fit the final predictor (:mod:`custseq.models.predictor`) on a ``prepare`` output and a fine-tuned network."""

from __future__ import annotations

import numpy as np

from custseq.baselines.base import WindowTables
from custseq.config import ModelConfig
from custseq.errors import TrainingError
from custseq.features.matrix import TabularSpec
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import ModelChoice
from custseq.models.finetune import ChurnValueModel, score_window
from custseq.models.predictor import NetworkOutputs, Predictor, TrainingWindow, fit_predictor


def fit_final_predictor(
    prepared: PreparedWindows, model: ChurnValueModel | None, cfg: ModelConfig, spec: TabularSpec | None = None
) -> tuple[Predictor, ModelChoice]:
    """Choose and fit the final predictor on the training windows; ``model`` None: without the network.

    The network's outputs for the training windows come from ``model`` as fine-tuned (no predictor yet).
    """
    if model is not None and model.predictor is not None:
        raise TrainingError("the model already has a predictor")
    horizon = prepared.horizon_days
    folders = list(prepared.training)
    if not folders:
        raise TrainingError("the predictor needs at least one labelled training window")
    windows = [TrainingWindow(tables := WindowTables.read(f, horizon), _network(model, f, tables)) for f in folders]
    if spec is None:
        if model is None:
            raise TrainingError("without a network the predictor needs a tabular spec")
        spec = model.tabular
    return fit_predictor(
        windows, spec, cfg.predictor, cfg.finetune, seed=cfg.finetune_training.seed, horizon_days=horizon
    )


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
