"""Score: a model saved by ``predict`` applied to new data, with the same outputs."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
from custseq.io.prepared import WindowFolder
from custseq.io.run_files import METRICS_FILE, QUARANTINE_DIR, Metrics, RunFolder
from custseq.io.tables import Tables
from custseq.models.finetune import ChurnValueModel, load_churn_value, score_window
from custseq.models.next_event import ItemMixture
from custseq.models.pretrain import load_pretrained
from custseq.pipelines.outputs import ItemProposer, PredictRun, copy_quarantine, score_customers, write_scored
from custseq.pipelines.predict import LEVEL_FILE, MIXTURE_FILE, NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.prepare import prepare_scoring_sequences
from custseq.pipelines.prospects import NO_PROSPECT_MODEL, ProspectFit, score_prospects
from custseq.scoring.item_level import ItemLevel

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
    """Score new data with a fitted model in memory (what :func:`score` and the estimator do).

    ``proposer`` proposes the plans' next items (optional: without it plans hold catalogue actions only).
    """
    started = time.perf_counter()
    as_of_date = parse_date(as_of, "as-of") if as_of else None  # never the training as-of saved in data_cfg
    window = dataclasses.replace(data_cfg.window, horizon_days=model.horizon_days, as_of=as_of_date)
    cfg = dataclasses.replace(data_cfg, window=window)
    inputs = fingerprint(describe_tables(tables), config_to_dict(cfg), model.horizon_days)
    with work_folder("score") as tmp, staged_output(out, command="score", inputs=inputs) as staging:
        work = WindowFolder(tmp)
        population = model.predictor.btyd_fit if model.predictor is not None else None
        scoring = prepare_scoring_sequences(
            tables, cfg, tmp, vocab=model.vocab, with_features=True,
            btyd_fit=population.record() if population is not None else None,
        )  # fmt: skip
        scores = score_window(model, work)
        seconds = time.perf_counter() - started
        integer_ids = scoring.report.accounts()["transactions"].customer_id_type == "integer"
        scored = score_customers(scores, work, model, cfg, proposer, integer_ids=integer_ids)
        prospects = score_prospects(ProspectFit(model.prospects, NO_PROSPECT_MODEL), work, cfg, integer_ids=integer_ids)
        as_of_text = scoring.window.as_of.isoformat()
        metrics = Metrics(
            as_of=as_of_text,
            horizon_days=model.output_horizon_days,
            customers_scored=len(scores.customer_ids),
            unknown_values=dict(scoring.unknown_values),
            tables=scoring.report.accounts(),
            seconds=round(seconds, 2),
            prospects=prospects.summary if prospects is not None else None,
            **scored.metrics_fields(),
        )
        if staging is not None:
            folder = RunFolder(staging)
            write_scored(folder, scored, metrics, model, work, cfg)
            copy_quarantine(tmp / QUARANTINE_DIR, folder.path / QUARANTINE_DIR)
            if prospects is not None:
                prospects.write(folder.path)
    out_dir = Path(out) if out is not None else None
    return PredictRun(
        scored.predictions, scored.embeddings.to_pandas(), metrics, out_dir, model, cfg, as_of_text, proposer,
        scored.contacts, prospects.frame if prospects is not None else None,
    )  # fmt: skip


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
