"""The Python API: tables as a user passes them (paths, ``db.duckdb:table``, frames) in, one pipeline called.

Each function builds the run's :class:`~custseq.io.tables.Tables` and :class:`~custseq.config.RunConfig` from its
arguments and calls one function of :mod:`custseq.pipelines`; ``custseq.<name>`` re-exports them. With
``progress=True`` each shows its stages with their durations, and its bars with their time left, on stderr, in a
script as in a notebook (:class:`~custseq.progress.RunProgress`); ``on_stage``, where there is one, hears each
stage start, shown or not.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custseq.config import RunConfig, with_seed, with_window
from custseq.errors import ConfigError
from custseq.io.tables import Tables
from custseq.pipelines.prepare import PrepareResult
from custseq.pipelines.prepare import prepare as prepare_windows
from custseq.pipelines.validate import validate
from custseq.progress import RunProgress, Stage
from custseq.validate.tables import ValidationReport

if TYPE_CHECKING:  # the model pipelines import torch: loaded only by the functions that need them
    import pandas as pd
    import pyarrow as pa

    from custseq.config.downstream import HeadConfig
    from custseq.downstream.head import FittedHead
    from custseq.io.run_files import EvaluationResult
    from custseq.models.pretrain import PretrainRun
    from custseq.pipelines.outputs import PredictRun
    from custseq.pipelines.prepare import ScoringSequences


def validate_tables(
    transactions: Any,
    *,
    customers: Any = None,
    events: Any = None,
    as_of: str | dt.date | None = None,
    config: RunConfig | None = None,
    quarantine_dir: Path | str | None = None,
    progress: bool = False,
) -> ValidationReport:
    """Validate tables and optionally write the quarantine files.

    With ``as_of`` and ``config.validation.future_rows == "quarantine"``, rows after as-of are quarantined.
    """
    cfg = with_window(config or RunConfig(), as_of=as_of)
    with RunProgress(progress) as shown:
        shown.stage("validating tables")
        return validate(_tables(transactions, customers, events, cfg), cfg, quarantine_dir=quarantine_dir)


def columns(
    transactions: Any = None, *, customers: Any = None, events: Any = None, config: RunConfig | None = None
) -> pd.DataFrame:
    """How the tables' columns fill the roles of the data contract, read from their first rows.

    One row per role and per column without a role: ``table``, ``role`` (None for an extra column),
    ``required``, ``meaning``, ``source``, ``how`` (mapped, detected, computed, missing or extra), ``kind``
    and ``note``. A missing required role's note is the ``--column`` option that maps it; in Python, map it
    in ``config.columns``. Without tables, the roles of every table as the contract defines them.
    """
    from custseq.errors import ConfigError
    from custseq.pipelines.columns import explain_columns
    from custseq.validate.roles import contract_roles, frame_of

    if transactions is None:
        if customers is not None or events is not None:
            raise ConfigError("columns: pass the transactions with the customers or events table")
        return frame_of(contract_roles())
    cfg = config or RunConfig()
    return explain_columns(_tables(transactions, customers, events, cfg), cfg).frame()


def prepare(
    transactions: Any,
    *,
    out: Path | str,
    customers: Any = None,
    events: Any = None,
    as_of: str | dt.date | None = None,
    horizon: str | int | None = None,
    config: RunConfig | None = None,
    progress: bool = False,
    on_stage: Stage | None = None,
) -> PrepareResult:
    """Validate the tables and write windows, labels, features and sequences under ``out``.

    Parameters
    ----------
    transactions, customers, events
        A path (CSV, CSV.gz, Parquet), a list of paths, ``path.duckdb:table``, or a pandas/polars/Arrow frame.
    out
        Output folder (created; existing window outputs are replaced).
    as_of
        Inclusive scoring date; default the last day in the data.
    horizon
        ``90d``, ``13w``, ``6m``, ``1y`` or days; overrides ``config.window.horizon_days``.
    config
        All other settings.
    progress
        Show each stage with its duration on stderr.
    on_stage
        Called with a short description as each stage starts.

    Raises
    ------
    ConfigError
        If ``progress`` is a function (``on_stage`` takes one).
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    if callable(progress):  # it took the stage callback until on_stage did
        raise ConfigError("prepare's progress takes True or False; pass a function of each stage as on_stage")
    cfg = with_window(config or RunConfig(), as_of=as_of, horizon=horizon)
    with RunProgress(progress, on_stage=on_stage) as shown:
        return prepare_windows(_tables(transactions, customers, events, cfg), cfg, out, progress=shown.stage)


def predict(
    transactions: Any,
    *,
    horizon: str | int | None = None,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    seed: int | None = None,
    out: Path | str | None = None,
    work_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = False,
    on_stage: Stage | None = None,
    nproc: int = 1,
) -> pd.DataFrame:
    """Churn probability and expected value over the horizon, with P10/P50/P90, for every customer.

    Trains on windows before ``as_of`` (default the last day in the data) and scores every customer with
    history at ``as_of``. ``out`` (optional) receives the DESIGN §4 outputs. ``resume`` continues a run into
    ``out`` that stopped before its end (killed, interrupted, failed) from its last finished stage, with the
    same result as a run never stopped. ``progress`` shows each stage with its duration and the training bars
    with their time left on stderr. ``nproc`` > 1 runs the pre-training and fine-tuning on that many processes
    under torchrun (distributed data parallel, one machine). See :func:`predict_run` for the metrics and the model.

    Raises
    ------
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    return predict_run(
        transactions, horizon=horizon, as_of=as_of, customers=customers, events=events, config=config, seed=seed,
        out=out, work_dir=work_dir, resume=resume, progress=progress, on_stage=on_stage, nproc=nproc,
    ).predictions  # fmt: skip


def predict_run(
    transactions: Any,
    *,
    horizon: str | int | None = None,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    seed: int | None = None,
    out: Path | str | None = None,
    work_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = False,
    on_stage: Stage | None = None,
    nproc: int = 1,
) -> PredictRun:
    """:func:`predict`, returning the predictions with the embeddings, metrics and the fitted model."""
    from custseq.pipelines.predict import predict as run

    cfg = with_seed(with_window(config or RunConfig(), as_of=as_of, horizon=horizon), seed)
    tables = _tables(transactions, customers, events, cfg)
    return run(
        tables, cfg, out=out, work_dir=work_dir, resume=resume, progress=progress, on_stage=on_stage, nproc=nproc
    )


def score(
    model_dir: Path | str,
    transactions: Any,
    *,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    out: Path | str | None = None,
    progress: bool = False,
) -> PredictRun:
    """Score new data with a model saved by ``predict`` (``<out>/model``).

    The data are validated and mapped with the model's own data settings unless ``config`` is given; values
    the model's vocabulary does not know map to the unknown id and are counted in ``metrics.unknown_values``.

    Raises
    ------
    ArtifactError
        If the model directory is missing, corrupted or not a churn-value model.
    SchemaError
        If the data lack a column or field the model was trained with.
    """
    from custseq.pipelines.score import score as run

    tables = Tables.of(transactions, customers=customers, events=events, columns=config.columns if config else None)
    with RunProgress(progress) as shown:
        shown.stage("scoring")
        return run(model_dir, tables, config, as_of=as_of, out=out)


def pretrain(
    transactions: Any,
    *,
    out: Path | str,
    customers: Any = None,
    events: Any = None,
    as_of: str | None = None,
    horizon: str | int | None = None,
    config: RunConfig | None = None,
    nproc: int = 1,
    resume: bool = False,
    progress: bool = False,
    on_stage: Stage | None = None,
) -> PretrainRun:
    """Prepare the data and pre-train an encoder on its training windows (``config.model``'s encoder,
    objectives and ``pretrain_training``; default :data:`~custseq.pipelines.pretrain.PRETRAIN_DEFAULTS`); save
    the model to ``out``. ``progress`` shows each stage with its duration and the training bars with their time
    left on stderr. See :func:`custseq.pipelines.pretrain.pretrain`.
    """
    from custseq.pipelines.pretrain import PRETRAIN_DEFAULTS
    from custseq.pipelines.pretrain import pretrain as run

    cfg = with_window(config or PRETRAIN_DEFAULTS, as_of=as_of, horizon=horizon)
    return run(_tables(transactions, customers, events, cfg), cfg, out, nproc=nproc, resume=resume,
               progress=progress, on_stage=on_stage)  # fmt: skip


def embed(
    model_dir: Path | str,
    transactions: Any,
    *,
    out: Path | str,
    customers: Any = None,
    events: Any = None,
    as_of: str | None = None,
    config: RunConfig | None = None,
    progress: bool = False,
) -> tuple[pa.Table, ScoringSequences]:
    """Embed every customer of new data as of ``as_of`` with a pre-trained model; write ``out`` (Parquet)."""
    from custseq.pipelines.pretrain import embed_customers

    cfg = with_window(config or RunConfig(), as_of=as_of)
    with RunProgress(progress) as shown:
        shown.stage("embedding every customer")
        return embed_customers(model_dir, _tables(transactions, customers, events, cfg), cfg, out)


def fit_head(
    model_dir: Path | str,
    transactions: Any,
    labels: Any,
    *,
    task: str,
    out: Path | str | None = None,
    label_column: str | None = None,
    with_features: bool = False,
    as_of: str | dt.date | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    head_config: HeadConfig | None = None,
    progress: bool = False,
) -> FittedHead:
    """Fit a head for a per-customer label on a saved model's embeddings (and features) as of ``as_of``.

    ``labels`` is a CSV/Parquet path or a pandas frame of ``customer_id`` and the label; ``as_of`` the date the
    labels refer to (inputs read rows up to the end of that day only; default the last day in the data);
    ``task`` ``classification`` or ``regression``; ``head_config`` the other settings. The head's metrics
    (cross-validated, against the features alone and a trivial baseline) are in ``.metrics``; ``out`` saves it
    for ``score --head``. See :func:`custseq.downstream.fit.fit_head`.
    """
    import dataclasses

    from custseq.config import parse_date
    from custseq.config.downstream import HeadConfig
    from custseq.downstream.fit import fit_head as run

    settings = dataclasses.asdict(head_config or HeadConfig()) | {"task": task, "with_features": with_features}
    cfg = HeadConfig(**settings)
    tables = Tables.of(transactions, customers=customers, events=events, columns=config.columns if config else None)
    with RunProgress(progress) as shown:
        shown.stage("fitting the head")
        return run(
            model_dir, tables, labels, cfg, label_column=label_column,
            as_of=parse_date(as_of, "as-of") if as_of is not None else None, data_config=config, out=out,
        )  # fmt: skip


def evaluate(
    transactions: Any,
    *,
    horizon: str | int | None = None,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    transfer_from: Any = None,
    **options: Any,
) -> EvaluationResult:
    """Compare custseq with its baselines on one dataset; ``options`` are those of
    :func:`custseq.pipelines.evaluate.evaluate` (protocol, seeds, methods, ablations, label_fractions, out,
    progress, on_stage…); ``progress=True`` shows a bar over the seeds and methods with its time left."""
    from custseq.pipelines.evaluate import evaluate as run

    cfg = with_window(config or RunConfig(), as_of=as_of, horizon=horizon)
    source = Tables.of(transfer_from) if transfer_from is not None else None
    return run(_tables(transactions, customers, events, cfg), cfg, transfer_from=source, **options)


def _tables(transactions: Any, customers: Any, events: Any, cfg: RunConfig) -> Tables:
    return Tables.of(transactions, customers=customers, events=events, columns=cfg.columns)
