"""Predict: prepare → pre-train → fine-tune → score every customer, and the outputs of DESIGN §4.

Work files (prepared windows, checkpoints) live in ``<out>.work`` with ``out``, a ``work_dir`` when given, else
in a temporary folder. ``<out>.work`` is removed once ``out`` is in place and kept when a run stops before: with
``resume`` the next run skips the stages it finished (the prepared windows) and continues its training from the
last checkpoints (:func:`custseq.io.atomic.staged_run`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow.parquet as pq

from custseq.baselines.base import WindowTables
from custseq.baselines.btyd import BtydFit, fit_btyd, predict_btyd
from custseq.config import RunConfig, config_from_dict, config_to_dict
from custseq.errors import ConfigError, TrainingError
from custseq.evaluation.fairness import Audit
from custseq.io.atomic import ResumableWork, describe_tables, fingerprint, staged_run
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.io.run_files import (
    MODEL_DIR,
    QUARANTINE_DIR,
    BacktestMetrics,
    BgNbdFit,
    ItemMixtureInfo,
    Metrics,
    ModelChoice,
    PrepareSummary,
    RunFolder,
    TaskWeighting,
    ValidationMetrics,
)
from custseq.io.tables import Tables
from custseq.metrics import churn_value_metrics
from custseq.models.checkpoints import CHECKPOINT_FILE, load_checkpoint
from custseq.models.combine import fit_final_predictor, predictor_windows
from custseq.models.finetune import (
    ChurnValueModel,
    FitResult,
    WindowScores,
    finetune_prepared,
    fingerprint_of,
    save_churn_value,
)
from custseq.models.next_event import fit_item_mixture, item_field
from custseq.models.predictor import CARRIED_BY
from custseq.models.pretrain import PretrainRun, load_pretrained, pretrain_prepared
from custseq.models.prospects import ProspectModel
from custseq.pipelines.diagnostics import audit_validation, training_history, validation_predictions
from custseq.pipelines.finetune_worker import Launcher, finetune_distributed, launcher_on, pretrain_distributed
from custseq.pipelines.nodes import JobList, Nodes
from custseq.pipelines.outputs import (
    BtydOnly,
    ItemProposer,
    PredictRun,
    ScoredCustomers,
    btyd_scores,
    copy_quarantine,
    score_customers,
    write_scored,
)
from custseq.pipelines.prepare import prepare
from custseq.pipelines.prospects import ScoredProspects, fit_prospects, score_prospects
from custseq.pipelines.shards import WrittenScores, score_window_into
from custseq.progress import Note, RunProgress
from custseq.scoring.actions import load_catalogue
from custseq.scoring.item_level import decide_item_level
from custseq.scoring.lapse import lapsed_churn_rate
from custseq.scoring.products import load_products
from custseq.scoring.review_outcomes import read_decision_history, review_outcomes_of_prepared
from custseq.sequences.vocab import SequenceVocab
from custseq.windows import longest_trainable_horizon

Stage = Callable[[str], None]
NEXT_EVENT_DIR = "next-event"  # inside the model folder: the pre-trained model with its next-event head
MIXTURE_FILE = "item-mixture.json"  # in NEXT_EVENT_DIR: how much of each customer's own history to mix in
LEVEL_FILE = "item-level.json"  # in NEXT_EVENT_DIR: products or their categories, as decided on validation


def predict(
    tables: Tables,
    config: RunConfig,
    *,
    out: Path | str | None = None,
    work_dir: Path | str | None = None,
    resume: bool = False,
    progress: bool = False,
    on_stage: Stage | None = None,
    nproc: int = 1,
    nodes: Nodes | None = None,
) -> PredictRun:
    """Train on the windows before ``config.window.as_of`` and score every customer with history at it.

    Returns the predictions with the embeddings, metrics and the fitted model; ``out`` (optional) receives
    the DESIGN §4 outputs and ``model/``. ``progress`` shows each stage with its duration and the training
    bars with their time left on stderr (:class:`~custseq.progress.RunProgress`); ``on_stage`` hears each stage
    start, shown or not.

    Work files go to ``<out>.work`` (or ``work_dir``), which a run that stops before its end leaves behind;
    ``resume`` continues such a run: the windows it prepared are used as they are, its pre-training and
    fine-tuning continue from their last checkpoints (each says so in a "resumed: …" note), and the result is
    that of a run never stopped. With nothing to resume, the run starts from the beginning, with a note.

    With ``nproc`` > 1 the pre-training and fine-tuning run on that many processes of this machine under
    ``torchrun`` (distributed data parallel: gloo on CPU, NCCL on GPU), each on its share of the training
    batches (:mod:`custseq.pipelines.finetune_worker`); the rest of the run stays in this process. With several
    ``nodes`` they run on ``nproc`` processes of each machine: this one, the head, announces each training step
    in its work folder, which ``custseq join`` on the others follows (:mod:`custseq.pipelines.nodes`).

    Raises
    ------
    ConfigError
        With ``resume``, if the data or settings changed since the stopped run, or there is no ``out``.
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    started = time.perf_counter()
    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1 (processes for the training steps), got {nproc}")
    _check_action_inputs(config)  # a bad catalogue or products file fails now, not after training
    history = read_decision_history(config.audit.decisions_history)  # a bad decisions file fails now too
    inputs = fingerprint(describe_tables(tables), config_to_dict(config))
    # everything goes to a staging folder beside `out`, which becomes `out` (with run.json) only at the end
    shown = RunProgress(progress, on_stage=on_stage)
    staged = staged_run(out, command="predict", inputs=inputs, work_dir=work_dir, resume=resume)
    with shown, staged as (staging, work):  # the lock of `out` covers its work folder, <out>.work
        say = shown.stage
        if work.note is not None:
            say(Note(work.note))
        prepared = _prepare_trainable(tables, config, work, say)
        if not prepared.layout.training:
            run = _btyd_alone(prepared, config, staging, say, started)
            return dataclasses.replace(run, out_dir=Path(out) if out is not None else None)
        layout, summary = prepared.layout, prepared.summary
        fit, pretrained = _fit(layout, work, config, shown, nproc, nodes)
        say("fitting the boosted heads and choosing the predictor on the validation customers")
        with predictor_windows(layout.training, config.model.predictor.max_training_customers) as windows:
            fit.model.predictor, choice = fit_final_predictor(layout, fit.model, config.model, windows=windows)
            fit.model.predictor.lapsed_churn_rate = _lapsed_churn_rate(windows, layout.horizon_days, config)
        # the validation customers' labels are of the trained horizon: checked before any carry
        audited = out is not None or summary.config.audit.recalibrate_groups  # the corrections come from the audit
        checked = _check_on_validation(fit.model, layout, summary.config, say) if audited else None
        if checked is not None:  # none unless [audit] recalibrate_groups
            fit.model.predictor.group_corrections = checked.audit.corrections
        # after the validation check, which fits BG/NBD on its own window
        fit.model.predictor.btyd_fit = _population_btyd(layout, summary)
        if summary.horizon_days != config.window.horizon_days:
            fit.model.predictor.carry_to_days = config.window.horizon_days
            choice = dataclasses.replace(choice, trained_horizon_days=summary.horizon_days, carried_by=CARRIED_BY)
        proposer = _item_proposer(pretrained, fit.model.vocab, layout, summary.config, say)
        say("scoring every customer and proposing their next items")
        scratch = work.folder / "scoring-shards"  # a stopped run's, if any, is stale
        shutil.rmtree(scratch, ignore_errors=True)
        scoring = score_window_into(
            RunFolder(staging) if staging is not None else None, fit.model, layout.scoring, proposer,
            summary.config, integer_ids=_integer_ids(summary), scratch=scratch,
            between=lambda: say("segments, plans and the contact list for every customer"),
        )  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)  # none when nothing was written
        seconds = scoring.scored_at - started
        metrics = _metrics(summary, fit, scoring.scores, scoring.results, seconds, checked, choice)
        outcomes = review_outcomes_of_prepared(history, layout.daily_spend_file, summary)
        fit.model.prospects, prospects = _prospects(layout, summary, config, say)
        metrics = dataclasses.replace(
            metrics, review_outcomes=outcomes, prospects=prospects.summary if prospects is not None else None
        )
        if staging is not None and checked is not None:
            say("writing the model and the run's records")
            folder = RunFolder(staging)
            folder.write_metrics(metrics)
            _save_models(folder.path / MODEL_DIR, fit, pretrained, proposer, config, summary.config, layout)
            if prospects is not None:
                prospects.write(folder.path)
            copy_quarantine(layout.quarantine_dir, folder.path / QUARANTINE_DIR)
            folder.write_history(training_history(pretrained.result if pretrained else None, fit.result))
            folder.write_validation(checked.predictions)
            folder.write_audit(checked.audit.to_record())
    return PredictRun(
        scoring.predictions, scoring.embeddings, metrics, Path(out) if out is not None else None, fit.model,
        summary.config, summary.as_of, proposer, scoring.results.contacts,
        prospects.frame if prospects is not None else None,
    )  # fmt: skip


def _prospects(
    layout: PreparedWindows, summary: PrepareSummary, config: RunConfig, say: Stage
) -> tuple[ProspectModel | None, ScoredProspects | None]:
    """The prospects' model (when the data have events and enough prospects) and their scores."""
    if not layout.scoring.prospects.is_file():
        return None, None
    if config.prospects.mode == "score":
        say("learning who of the prospects (events, no purchase yet) buys for the first time")
    fitted = fit_prospects(layout, summary.config, config.model.finetune_training.seed)
    scored = score_prospects(fitted, layout.scoring, summary.config, integer_ids=_integer_ids(summary))
    return fitted.model, scored


def _population_btyd(layout: PreparedWindows, summary: PrepareSummary) -> BtydFit | None:
    """BG/NBD + Gamma-Gamma of the scoring window, saved with the model so that ``score`` reads any batch with
    them (None where they cannot be fitted: each batch is then fitted on its own, as before). The BG/NBD is the
    one prepare fitted for the window's ``btyd_*`` features, when it did."""
    scoring = next((w for w in summary.windows if w.role == "score"), None)
    fitted = scoring.btyd_features if scoring is not None else None
    try:
        return fit_btyd(pq.read_table(layout.scoring.features), bgnbd=fitted if isinstance(fitted, BgNbdFit) else None)
    except TrainingError:
        return None


def _integer_ids(summary: PrepareSummary) -> bool:
    """Whether the user's customer ids are integers (the outputs then give them back as such)."""
    return summary.tables["transactions"].customer_id_type == "integer"


def _check_action_inputs(cfg: RunConfig) -> None:
    """Read the action catalogue and the products table once up front.

    Raises
    ------
    ConfigError
        If either cannot be read or breaks its format.
    """
    load_catalogue(cfg.actions.catalogue)
    if cfg.actions.products:
        load_products(cfg.actions.products)


@dataclass(frozen=True)
class _Prepared:
    """The windows of a ``prepare`` output, written by this run or by the stopped run it resumes."""

    layout: PreparedWindows
    summary: PrepareSummary


def _prepare_trainable(tables: Tables, config: RunConfig, work: ResumableWork, say: Stage) -> _Prepared:
    """The prepared windows; when no training window fits the horizon, those of the longest horizon that fits;
    when not even a short one fits, the windows as prepared (no training window)."""
    relaxed = dataclasses.replace(config, window=dataclasses.replace(config.window, require_training=False))
    prepared = _prepare_once(tables, relaxed, work, "prepared", say)
    if prepared.layout.training:
        return prepared
    start, end = (dt.datetime.fromisoformat(d) for d in (prepared.summary.data_start, prepared.summary.data_end))
    shorter = longest_trainable_horizon(start, end, config.window)
    if shorter is None:  # not even a short horizon: BG/NBD + Gamma-Gamma alone (see _btyd_alone)
        return prepared
    requested = config.window.horizon_days
    say(f"no training window fits {requested} days: training on {shorter} days, carried to {requested} by BG/NBD")
    window = dataclasses.replace(config.window, horizon_days=shorter)
    return _prepare_once(tables, dataclasses.replace(config, window=window), work, "prepared-short", say)


def _prepare_once(tables: Tables, config: RunConfig, work: ResumableWork, name: str, say: Stage) -> _Prepared:
    """``prepare`` into ``work.folder / name``; or, resuming, the windows the stopped run finished preparing there
    (only when it recorded them as finished: a folder it was still writing is prepared again)."""
    folder = work.folder / name
    if work.is_finished(name):
        summary = RunFolder(folder).read_prepare_summary()
        say(Note(f"resumed: the windows prepared by the stopped run are used as they are ({folder})"))
        for note in summary.notes:
            say(Note(note))
        return _Prepared(PreparedWindows.of(folder, summary), summary)
    shutil.rmtree(folder, ignore_errors=True)  # what a stopped run may have half-written
    prepared = prepare(tables, config, folder, progress=say)
    work.finish(name)
    return _Prepared(prepared.layout, prepared.summary)


def _lapsed_churn_rate(windows: list[WindowFolder], horizon_days: int, cfg: RunConfig) -> float | None:
    """How often the predictor's training windows' lapsed regulars churned (None: too few of them to tell)."""
    labelled = []
    for folder in windows:
        tables = WindowTables.read(folder, horizon_days)
        labelled.append((tables.features.to_pandas(), tables.label_arrays()[0]))
    return lapsed_churn_rate(labelled, cfg.segments)


BTYD_ALONE = (
    "no labelled window fits before the as-of date (the history is shorter than min_history_days plus a "
    "7-day horizon): the predictions are BG/NBD + Gamma-Gamma's, fitted on each customer's own history, with no "
    "labels to calibrate or check them, no interval beyond the chance of no purchase, and no model to save"
)


def _btyd_alone(prepared: _Prepared, cfg: RunConfig, out: Path | str | None, say: Stage, started: float) -> PredictRun:
    """Predictions from BG/NBD + Gamma-Gamma alone, the classic answer when no supervised model can be trained.

    Raises
    ------
    TrainingError
        If BG/NBD cannot be fitted on these customers (too few, or no repeat purchases).
    """
    layout, summary = prepared.layout, prepared.summary
    say("no labelled window fits before the as-of date: BG/NBD + Gamma-Gamma alone, on each customer's own history")
    horizon = cfg.window.horizon_days
    btyd = predict_btyd(pq.read_table(layout.scoring.features), horizon)
    scorer = BtydOnly(horizon, SequenceVocab.load(layout.vocab_file))
    scores = btyd_scores(btyd)
    scored = score_customers(scores, layout.scoring, scorer, summary.config, None, integer_ids=_integer_ids(summary))
    metrics = Metrics(
        as_of=summary.as_of, horizon_days=horizon, customers_scored=len(scores.customer_ids), training_windows=(),
        pretrained=False, tables=summary.tables, seconds=round(time.perf_counter() - started, 2),
        btyd_alone=BTYD_ALONE, **scored.metrics_fields(),
    )  # fmt: skip
    if out is not None:
        folder = RunFolder(Path(out))
        write_scored(folder, scored, metrics, scorer, layout.scoring, summary.config)
        copy_quarantine(layout.quarantine_dir, folder.path / QUARANTINE_DIR)
    return PredictRun(
        scored.predictions, scored.embeddings.to_pandas(), metrics, Path(out) if out is not None else None, None,
        summary.config, summary.as_of, None, scored.contacts,
    )  # fmt: skip


@dataclass(frozen=True)
class _ValidationCheck:
    predictions: pd.DataFrame  # the validation customers, labelled (validation.parquet)
    audit: Audit  # the bias audit of those predictions


def _check_on_validation(
    model: ChurnValueModel, layout: PreparedWindows, cfg: RunConfig, say: Stage
) -> _ValidationCheck:
    say("scoring the validation customers and auditing the predictions across customer groups")
    predictions = validation_predictions(model, layout.validation, cfg)
    return _ValidationCheck(predictions, audit_validation(predictions, layout.validation, cfg.audit))


def _save_models(
    folder: Path,
    fit: FitResult,
    pretrained: PretrainRun | None,
    proposer: ItemProposer | None,
    cfg: RunConfig,
    data_cfg: RunConfig,
    layout: PreparedWindows,
) -> None:
    """The churn-value model, and the pre-trained model whose next-event head proposes items for ``score``."""
    save_churn_value(folder, fit, cfg.model, config_to_dict(data_cfg), fingerprint_of(layout))
    if pretrained is not None:
        shutil.copytree(pretrained.model_dir, folder / NEXT_EVENT_DIR, dirs_exist_ok=True)
        if proposer is not None and proposer.mixture is not None:
            mixture = ItemMixtureInfo(**dataclasses.asdict(proposer.mixture)).to_json()
            (folder / NEXT_EVENT_DIR / MIXTURE_FILE).write_text(json.dumps(mixture, indent=1, allow_nan=False))
        if proposer is not None and proposer.level is not None:
            level = json.dumps(dataclasses.asdict(proposer.level), indent=1, allow_nan=False)
            (folder / NEXT_EVENT_DIR / LEVEL_FILE).write_text(level)


def _item_proposer(
    pretrained: PretrainRun | None, vocab: SequenceVocab, layout: PreparedWindows, cfg: RunConfig, say: Stage
) -> ItemProposer | None:
    """The pre-trained model with its copy mixture fitted on the latest training window (whose next events lie
    before the scoring cutoff: no leakage), and the level (products or categories) measured there; None without
    a next-event head."""
    if pretrained is None:
        return None
    model = load_pretrained(pretrained.model_dir)[0]
    if model.next_head is None:
        return None
    field = item_field(vocab, cfg.actions.item_field)
    if field is None or not layout.training:
        return ItemProposer(model)
    say("fitting the next-item mixture on the latest training window")
    horizon, k = layout.horizon_days, cfg.actions.k
    mixture = fit_item_mixture(model, vocab, layout.validation, layout.scoring, field, horizon_days=horizon, k=k)
    say("choosing between products and their categories on the latest training window")
    level = decide_item_level(
        model, vocab, layout.validation, layout.scoring, field, cfg.actions, horizon_days=horizon, mixture=mixture
    )
    return ItemProposer(model, mixture, level)


def _fit(
    layout: PreparedWindows,
    work: ResumableWork,
    cfg: RunConfig,
    progress: RunProgress,
    nproc: int = 1,
    nodes: Nodes | None = None,
) -> tuple[FitResult, PretrainRun | None]:
    """Pre-train (when on) then fine-tune, in this process or, with ``nproc`` > 1 or several ``nodes``, under
    torchrun; the joining machines hear of each step, and of the end of training, from the job list."""
    nodes = nodes or Nodes()
    if not nodes.several:
        on = f" on {nproc} processes (torchrun)" if nproc > 1 else ""
        return _fit_steps(layout, work, cfg, progress, on, nproc, None)
    jobs = JobList(work.folder)
    processes = f"{nproc} process" + ("es" if nproc != 1 else "")
    on = f" on {processes} on each of {nodes.count} machines (torchrun at {nodes.rendezvous})"
    try:
        return _fit_steps(layout, work, cfg, progress, on, nproc, launcher_on(nodes, jobs))
    finally:
        jobs.end()


def _fit_steps(
    layout: PreparedWindows,
    work: ResumableWork,
    cfg: RunConfig,
    progress: RunProgress,
    on: str,
    nproc: int,
    launch: Launcher | None,
) -> tuple[FitResult, PretrainRun | None]:
    m = cfg.model
    distributed = nproc > 1 or launch is not None
    pretrained = None
    if m.pretraining:
        progress.stage(f"pre-training the sequence encoder (masked + next event){on}")
        resume = _resumes_training(work, "pre-training", "pretrain", m.pretrain_training.epochs, progress.stage)
        out, checkpoints = work.folder / "pretrained", work.folder / "pretrain"
        if distributed:
            pretrained = pretrain_distributed(layout, m, out, checkpoints, nproc=nproc, resume=resume, launch=launch)
        else:
            pretrained = pretrain_prepared(
                layout, out, encoder=m.encoder, pretrain=m.pretrain, training=m.pretrain_training,
                work_dir=checkpoints, resume=resume, progress=progress,
            )  # fmt: skip
        work.finish("pre-training")
    progress.stage(f"fine-tuning the churn + value model{on}")
    encoder_dir = pretrained.model_dir if pretrained is not None else None
    resume = _resumes_training(work, "fine-tuning", "finetune", m.finetune_training.epochs, progress.stage)
    checkpoints = work.folder / "finetune"
    if distributed:
        fit = finetune_distributed(
            layout, m, checkpoints, nproc=nproc, resume=resume, encoder_dir=encoder_dir, launch=launch
        )
    else:
        fit = finetune_prepared(
            layout, m, encoder_dir=encoder_dir, work_dir=checkpoints, resume=resume, progress=progress
        )
    work.finish("fine-tuning")
    return fit, pretrained


def _resumes_training(work: ResumableWork, stage: str, name: str, epochs: int, say: Stage) -> bool:
    """Whether ``stage`` continues from the checkpoint in ``work.folder / name`` that the stopped run left (it
    then says where it continues from); False when this run resumes nothing or the stage had no checkpoint yet.

    Its checkpoint is the training's state after its last finished epoch, random states included (see
    :mod:`custseq.models.checkpoints`), so the training goes on as if it had never stopped; a finished stage's
    is read back with no epoch to run.
    """
    path = work.folder / name / CHECKPOINT_FILE
    if not work.resumed or not path.is_file():
        return False
    if work.is_finished(stage):
        say(Note(f"resumed: {stage} had finished; its model is read back from its last checkpoint"))
        return True
    done = len(load_checkpoint(path)["history"])
    say(Note(f"resumed: {stage} continues from its checkpoint after epoch {done} of at most {epochs}"))
    return True


def _metrics(
    summary: PrepareSummary,
    fit: FitResult,
    scores: WindowScores,
    scored: ScoredCustomers | WrittenScores,
    seconds: float,
    checked: _ValidationCheck | None,
    choice: ModelChoice,
) -> Metrics:
    backtest = None
    carried = choice.trained_horizon_days is not None  # the scoring window's labels are of the trained horizon
    if scores.churned is not None and scores.value is not None and not carried:  # labelled: a back-test
        p = scores.columns
        backtest = BacktestMetrics(
            **churn_value_metrics(scores.churned, p["churn_probability"], scores.value, p["clv_expected"])
        )
    weighting = fit.model.network.weighting
    audit = checked.audit.summary() if checked is not None else None
    return Metrics(
        as_of=summary.as_of,
        horizon_days=fit.model.output_horizon_days,
        customers_scored=len(scores.customer_ids),
        training_windows=tuple(fit.cutoffs),
        pretrained=fit.pretrained,
        validation=ValidationMetrics.from_json(fit.metrics),  # best_epoch, a float there, is a whole number
        task_weighting=TaskWeighting(mode=weighting.mode, weights=tuple(float(w) for w in weighting.weights())),
        calibration=fit.model.calibrator.method,
        model_choice=choice,
        tables=summary.tables,
        seconds=round(seconds, 2),
        backtest=backtest,
        audit=audit,
        **scored.metrics_fields(),
    )


def saved_data_config(saved: dict[str, Any]) -> RunConfig:
    """The data settings saved with a prepare output or a model (a clear error if this version cannot read them)."""
    try:
        return cast(RunConfig, config_from_dict(RunConfig, saved, where="the model's data settings"))
    except ConfigError as e:
        raise ConfigError(f"{e}; the model was saved by another custseq version, pass --config") from None
