"""Score: a model saved by ``predict`` applied to new data, with the same outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig, config_to_dict, parse_date
from custseq.errors import ArtifactError
from custseq.io.atomic import (
    OutputFolderError,
    describe_tables,
    fingerprint,
    require_complete,
    staged_output,
    work_folder,
)
from custseq.io.engine import connect, session
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import METRICS_FILE, QUARANTINE_DIR, BgNbdFit, Metrics, RunFolder
from custseq.io.tables import Tables
from custseq.models.finetune import ChurnValueModel, load_churn_value, score_tables
from custseq.models.next_event import ItemMixture
from custseq.models.pretrain import load_pretrained
from custseq.pipelines.outputs import (
    ItemProposer,
    PredictRun,
    ScoredCustomers,
    copy_quarantine,
    plans_read_sequences,
    score_customers_of,
)
from custseq.pipelines.predict import LEVEL_FILE, MIXTURE_FILE, NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.prepare import prepare_scoring_sequences, prepare_scoring_tables
from custseq.pipelines.prospects import NO_PROSPECT_MODEL, ProspectFit, ScoredProspects, score_prospects
from custseq.pipelines.shards import WrittenScores, score_window_into
from custseq.scoring.item_level import ItemLevel
from custseq.sequences.build import SHARD_FILE
from custseq.validate.tables import ValidationReport
from custseq.windows import Window

T = TypeVar("T")


def score(
    model_dir: Path | str,
    tables: Tables,
    config: RunConfig | None = None,
    *,
    as_of: str | None = None,
    out: Path | str | None = None,
) -> PredictRun:
    """Score new data with a model saved by ``predict``; what :func:`custseq.api.score` documents."""
    refuse_partial_run(Path(model_dir))
    _refuse_out_holding(Path(model_dir), out)
    model, saved, _ = load_churn_value(model_dir)
    data_cfg = config or saved_data_config(saved["data"])
    proposer = load_item_proposer(Path(model_dir) / NEXT_EVENT_DIR)
    return score_with_model(model, data_cfg, tables, as_of=as_of, out=out, proposer=proposer)


def score_with_model(
    model: ChurnValueModel,
    data_cfg: RunConfig,
    tables: Tables,
    *,
    as_of: str | None = None,
    out: Path | str | None = None,
    proposer: ItemProposer | None = None,
) -> PredictRun:
    """Score new data with a fitted model (what :func:`score` and the estimator do).

    The window's sequences go through a temporary folder and are streamed shard by shard, so any number of
    customers fits; :func:`score_in_memory` holds them in memory instead, for small batches (a service's). With
    ``out`` the results are written block by block and not held (:mod:`custseq.pipelines.shards`; the run reads
    them from ``out`` when asked for); without it they are held, as the caller gets them. ``proposer`` proposes
    the plans' next items (optional: without it plans hold catalogue actions only).
    """
    started = time.perf_counter()
    cfg = _scoring_config(model, data_cfg, as_of)
    inputs = fingerprint(describe_tables(tables), config_to_dict(cfg), model.horizon_days)
    with work_folder("score") as tmp, staged_output(out, command="score", inputs=inputs) as staging:
        work = WindowFolder(tmp)
        scoring = prepare_scoring_sequences(
            tables, cfg, tmp, vocab=model.vocab, with_features=True, btyd_fit=_population_fit(model)
        )
        integer_ids = _integer_ids(scoring.report)
        folder = RunFolder(staging) if staging is not None else None
        scored = score_window_into(folder, model, work, proposer, cfg, integer_ids=integer_ids, scratch=tmp / "shards")
        seconds = scored.scored_at - started
        prospects = score_prospects(ProspectFit(model.prospects, NO_PROSPECT_MODEL), work, cfg, integer_ids=integer_ids)
        metrics = _metrics(
            model, scoring.window, scoring.unknown_values, scoring.report, scored.results, seconds, prospects
        )
        if folder is not None:
            folder.write_metrics(metrics)
            copy_quarantine(tmp / QUARANTINE_DIR, folder.path / QUARANTINE_DIR)
            if prospects is not None:
                prospects.write(folder.path)
    out_dir = Path(out) if out is not None else None
    return PredictRun(
        scored.predictions, scored.embeddings, metrics, out_dir, model, cfg, metrics.as_of, proposer,
        scored.results.contacts, prospects.frame if prospects is not None else None,
    )  # fmt: skip


def score_in_memory(
    model: ChurnValueModel,
    data_cfg: RunConfig,
    tables: Tables,
    *,
    as_of: str | None = None,
    proposer: ItemProposer | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> PredictRun:
    """:func:`score_with_model` without writing anything: the window is prepared and scored in memory.

    The same validation, features, sequences, network and derived columns; for up to
    ``data_cfg.sequence.shard_customers`` customers the same batches too, hence the same numbers. No temporary
    folder (unless the plans propose next items, which read the sequences from files) and no quarantine files.

    Parameters
    ----------
    con
        A DuckDB connection the caller keeps open between calls (a service keeps one per worker); each call works
        in a session of its own on it (:func:`custseq.io.engine.session`), so calls may overlap. None: a
        connection is opened for this call.

    Raises
    ------
    CustseqError
        On any problem with the data, as :func:`score_with_model`.
    """
    started = time.perf_counter()
    cfg = _scoring_config(model, data_cfg, as_of)
    with _session_on(con, cfg) as cur:
        scoring = prepare_scoring_tables(cur, tables, cfg, vocab=model.vocab, btyd_fit=_population_fit(model))
    scores = score_tables(model, scoring.features, scoring.sequences)
    seconds = time.perf_counter() - started
    with contextlib.ExitStack() as stack:
        window = None
        if plans_read_sequences(proposer, model.vocab, cfg):
            window = WindowFolder(stack.enter_context(work_folder("score")))
            _write_one_shard(scoring.sequences, window.sequences)
        integer_ids = _integer_ids(scoring.report)
        scored = score_customers_of(scores, scoring.features, window, model, cfg, proposer, integer_ids=integer_ids)
    metrics = _metrics(model, scoring.window, scoring.unknown_values, scoring.report, scored, seconds)
    return _run(scored, metrics, None, model, cfg, proposer)


def _scoring_config(model: ChurnValueModel, data_cfg: RunConfig, as_of: str | None) -> RunConfig:
    """The data settings of a scoring run: the model's horizon, and ``as_of`` (never the training as-of saved in
    ``data_cfg``; None: the day after the data's last)."""
    as_of_date = parse_date(as_of, "as-of") if as_of else None
    window = dataclasses.replace(data_cfg.window, horizon_days=model.horizon_days, as_of=as_of_date)
    return dataclasses.replace(data_cfg, window=window)


def _population_fit(model: ChurnValueModel) -> BgNbdFit | None:
    """The BG/NBD fit saved with the model's predictor, for the window's BG/NBD features."""
    population = model.predictor.btyd_fit if model.predictor is not None else None
    return population.record() if population is not None else None


def _integer_ids(report: ValidationReport) -> bool:
    return report.accounts()["transactions"].customer_id_type == "integer"


def _metrics(
    model: ChurnValueModel,
    window: Window,
    unknown_values: dict[str, int],
    report: ValidationReport,
    scored: ScoredCustomers | WrittenScores,
    seconds: float,
    prospects: ScoredProspects | None = None,
) -> Metrics:
    return Metrics(
        as_of=window.as_of.isoformat(),
        horizon_days=model.output_horizon_days,
        customers_scored=scored.customers,
        unknown_values=dict(unknown_values),
        tables=report.accounts(),
        seconds=round(seconds, 2),
        prospects=prospects.summary if prospects is not None else None,
        **scored.metrics_fields(),
    )


def _run(
    scored: ScoredCustomers,
    metrics: Metrics,
    out_dir: Path | None,
    model: ChurnValueModel,
    cfg: RunConfig,
    proposer: ItemProposer | None,
    prospects: ScoredProspects | None = None,
) -> PredictRun:
    return PredictRun(
        scored.predictions, scored.embeddings.to_pandas(), metrics, out_dir, model, cfg, metrics.as_of, proposer,
        scored.contacts, prospects.frame if prospects is not None else None,
    )  # fmt: skip


@contextlib.contextmanager
def _session_on(con: duckdb.DuckDBPyConnection | None, cfg: RunConfig) -> Iterator[duckdb.DuckDBPyConnection]:
    """A session of its own on ``con``, or a new connection when there is none; closed at the end."""
    own = session(con) if con is not None else connect(cfg.engine)
    try:
        yield own
    finally:
        own.close()


def _write_one_shard(sequences: pa.Table, folder: Path) -> None:
    """The sequences as the single shard ``write_sequences`` would write for them."""
    shard = folder / "shard=0"
    shard.mkdir(parents=True, exist_ok=True)
    pq.write_table(sequences, shard / SHARD_FILE)


def load_item_proposer(folder: Path) -> ItemProposer | None:
    """The proposer saved by ``predict`` in ``<model>/next-event`` (None when the model has none)."""
    if not folder.is_dir():
        return None
    model = load_pretrained(folder)[0]
    if model.next_head is None:
        return None
    mixture = _saved(folder / MIXTURE_FILE, ItemMixture, "item mixture")
    level = _saved(folder / LEVEL_FILE, ItemLevel, "item level")  # None: saved before levels were measured
    return ItemProposer(model, mixture, level)


def _saved(path: Path, record: Callable[..., T], what: str) -> T | None:
    """The record saved as JSON in ``path``, or None without the file."""
    if not path.is_file():
        return None
    try:
        return record(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{path} is not a valid {what} ({e}); run predict again") from None


def refuse_partial_run(model_dir: Path) -> None:
    """A model inside a predict output folder is used only when that folder is whole (has its run.json); a model
    folder on its own is checked by its manifest when it is loaded.

    Raises
    ------
    ArtifactError
        If the model's run folder has no run.json (a predict that was stopped before its end).
    """
    run_folder = model_dir.absolute().parent
    if (run_folder / METRICS_FILE).is_file():
        require_complete(run_folder, "custseq score")


def _refuse_out_holding(model_dir: Path, out: Path | str | None) -> None:
    """score replaces its whole output folder: never the one its model is in."""
    if out is not None and Path(model_dir).absolute().is_relative_to(Path(out).absolute()):
        raise OutputFolderError(f"--out {out} holds the model {model_dir}; pass another folder for the scores")
