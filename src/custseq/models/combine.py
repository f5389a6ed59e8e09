"""Fit the final predictor (:mod:`custseq.models.predictor`) on a ``prepare`` output and a fine-tuned network."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq

from custseq.baselines.base import WindowTables
from custseq.config import ModelConfig
from custseq.errors import TrainingError
from custseq.features.matrix import fit_tabular
from custseq.io.atomic import work_folder
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import ModelChoice
from custseq.models.finetune import ChurnValueModel, score_window
from custseq.models.predictor import NetworkOutputs, Predictor, TrainingWindow, fit_predictor
from custseq.models.window_sample import sample_window


def fit_final_predictor(
    prepared: PreparedWindows,
    model: ChurnValueModel | None,
    cfg: ModelConfig,
    *,
    windows: Sequence[WindowFolder] | None = None,
) -> tuple[Predictor, ModelChoice]:
    """Choose and fit the final predictor on the training windows; ``model`` None: without the network.

    The network's outputs for the training windows come from ``model`` as fine-tuned (no predictor yet); the
    feature columns are the network's (its tabular spec), or without one those of the training windows.
    ``windows`` are the windows to learn from, as :func:`predictor_windows` gives them (None: taken here).
    """
    if model is not None and model.predictor is not None:
        raise TrainingError("the model already has a predictor")
    if windows is None:
        with predictor_windows(prepared.training, cfg.predictor.max_training_customers) as taken:
            return fit_final_predictor(prepared, model, cfg, windows=taken)
    folders = list(windows)
    if not folders:
        raise TrainingError("the predictor needs at least one labelled training window")
    horizon = prepared.horizon_days
    tables = [WindowTables.read(f, horizon) for f in folders]
    training = [TrainingWindow(t, _network(model, f, t)) for f, t in zip(folders, tables, strict=True)]
    spec = model.tabular if model is not None else fit_tabular([t.features for t in tables])
    predictor, choice = fit_predictor(
        training, spec, cfg.predictor, cfg.finetune, seed=cfg.finetune_training.seed, horizon_days=horizon
    )
    latest = _customers(prepared.training[0])
    if tables[0].features.num_rows < latest:  # a sample of the latest window (predictor_windows)
        choice = dataclasses.replace(choice, sampled_from=latest)
    return predictor, choice


@contextlib.contextmanager
def predictor_windows(training: Sequence[WindowFolder], max_customers: int | None) -> Iterator[list[WindowFolder]]:
    """The training windows (latest first) the final predictor learns from: the latest ones while their customers
    stay within ``max_customers`` (:func:`latest_windows`); when the latest alone has more, a stable sample of
    about ``max_customers`` of its customers (:func:`~custseq.models.window_sample.sample_window`), written to a
    temporary folder that lasts as long as the context."""
    folders = latest_windows(list(training), max_customers)
    customers = _customers(folders[0]) if folders else 0
    if max_customers is None or customers <= max_customers:
        yield folders
        return
    with work_folder("sample") as tmp:
        yield [sample_window(folders[0], max_customers / customers, tmp)]


def latest_windows(folders: list[WindowFolder], max_customers: int | None) -> list[WindowFolder]:
    """The latest windows (``folders`` is latest first) while their customers stay within ``max_customers``;
    always the latest one."""
    if max_customers is None:
        return folders
    kept: list[WindowFolder] = []
    customers = 0
    for folder in folders:
        n = _customers(folder)
        if kept and customers + n > max_customers:
            break
        kept.append(folder)
        customers += n
    return kept


def _customers(window: WindowFolder) -> int:
    return pq.ParquetFile(window.features).metadata.num_rows


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
