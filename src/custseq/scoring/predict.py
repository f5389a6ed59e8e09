"""`predict` (validate → prepare → pre-train → fine-tune → score) and `score` (a saved model on new data).

Both write the DESIGN §4 outputs to a folder: ``predictions.parquet`` / ``.csv``, ``embeddings.parquet``,
``metrics.json`` and ``quarantine/``; ``predict`` also writes ``model/``. Work files (prepared windows,
checkpoints) live in a temporary folder unless a ``work_dir`` is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custseq.baselines.btyd import BtydPredictions, predict_btyd
from custseq.config import ActionConfig, RunConfig, config_from_dict, config_to_dict, with_seed
from custseq.errors import ArtifactError, ConfigError, TrainingError
from custseq.metrics import churn_value_metrics
from custseq.models.finetune import (
    ChurnValueModel,
    FitResult,
    WindowScores,
    finetune_prepared,
    fingerprint_of,
    load_churn_value,
    save_churn_value,
    score_window,
)
from custseq.models.next_event import ItemMixture, fit_item_mixture, item_field, propose_next
from custseq.models.pretrain import PretrainModel, PretrainRun, load_pretrained, pretrain_prepared
from custseq.models.samples import WindowData
from custseq.prepare import PreparedWindows, prepare, prepare_scoring_sequences
from custseq.scoring.actions import load_catalogue, next_items_column, plan_actions
from custseq.scoring.diagnostics import (
    attention_json,
    audit_validation,
    profit_json,
    review_table,
    training_history,
    validation_predictions,
    write_json,
)
from custseq.scoring.profit import simulate_retention
from custseq.scoring.scores import value_score_formula, value_scores
from custseq.scoring.segments import assign_segments
from custseq.sequences.vocab import SequenceVocab

Stage = Callable[[str], None]
NEXT_EVENT_DIR = "next-event"  # inside the model folder: the pre-trained model with its next-event head
REPLANNED = ("predictions.parquet", "predictions.csv", "metrics.json", "report.html")  # what `replan` writes
MIXTURE_FILE = "item-mixture.json"  # in NEXT_EVENT_DIR: how much of each customer's own history to mix in


@dataclass
class ItemProposer:
    """What proposes the plans' next items: the pre-trained next-event head, mixed with each customer's own
    recent items as fitted on the latest training window (:func:`custseq.models.next_event.fit_item_mixture`)."""

    model: PretrainModel
    mixture: ItemMixture | None = None


@dataclass
class PredictRun:
    """What ``predict`` or ``score`` produced."""

    predictions: pd.DataFrame  # one row per customer with history at the as-of date
    embeddings: pd.DataFrame
    metrics: dict[str, Any]  # metrics.json
    out_dir: Path | None
    model: ChurnValueModel
    data_config: RunConfig
    as_of: str
    proposer: ItemProposer | None = None  # what proposes the plans' next items (None: catalogue actions only)


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
    progress: bool = False,
) -> pd.DataFrame:
    """Churn probability and expected value over the horizon, with P10/P50/P90, for every customer.

    Trains on windows before ``as_of`` (default the last day in the data) and scores every customer with
    history at ``as_of``. ``out`` (optional) receives the DESIGN §4 outputs. See :func:`run_predict` for
    the metrics and the model.

    Raises
    ------
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    run = run_predict(
        transactions, horizon=horizon, as_of=as_of, customers=customers, events=events, config=config, seed=seed,
        out=out, work_dir=work_dir, progress=progress,
    )  # fmt: skip
    return run.predictions


def run_predict(
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
    progress: bool = False,
    on_stage: Stage | None = None,
) -> PredictRun:
    """:func:`predict`, returning the predictions with the embeddings, metrics and the fitted model."""
    cfg = with_seed(config or RunConfig(), seed)
    say = on_stage or (lambda _msg: None)
    started = time.perf_counter()
    with _work_folder(work_dir) as work:
        prepared = prepare(
            transactions, out=work / "prepared", customers=customers, events=events, as_of=as_of, horizon=horizon,
            config=cfg, progress=say,
        )  # fmt: skip
        fit, pretrained = _fit(work, cfg, say, progress)
        say("scoring every customer")
        layout = PreparedWindows.read(work / "prepared")
        scores = score_window(fit.model, WindowData(layout.scoring))
        data_cfg = _data_config(prepared.summary["config"])
        metrics = _metrics(prepared.summary, fit, scores, time.perf_counter() - started)
        proposer = _item_proposer(pretrained, fit.model.vocab, layout, data_cfg, say)
        if out is not None:
            say("scoring the validation customers and auditing the predictions across customer groups")
            validation = validation_predictions(fit.model, layout.training[0], data_cfg)
            audited = audit_validation(validation, layout.training[0], data_cfg.audit)
            metrics["audit"] = {"labelled_customers": len(validation), "flagged_groups": audited.flagged_groups}
        run = _run(scores, layout.scoring, metrics, fit.model, data_cfg, prepared.summary["as_of"], out, proposer)
        if out is not None:
            out = Path(out)
            _save_models(out / "model", fit, pretrained, proposer, cfg, data_cfg, fingerprint_of(work / "prepared"))
            _copy_quarantine(work / "prepared" / "quarantine", out / "quarantine")
            pretrain_result = pretrained.result if pretrained is not None else None
            write_json(out / "history.json", training_history(pretrain_result, fit.result))
            pq.write_table(pa.Table.from_pandas(validation, preserve_index=False), out / "validation.parquet")
            write_json(out / "audit.json", audited.to_json())
    return run


def score(
    model_dir: Path | str,
    transactions: Any,
    *,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    out: Path | str | None = None,
) -> PredictRun:
    """Score new data with a model saved by ``predict`` (``<out>/model``).

    The data are validated and mapped with the model's own data settings unless ``config`` is given; values
    the model's vocabulary does not know map to the unknown id and are counted in ``metrics["unknown_values"]``.

    Raises
    ------
    ArtifactError
        If the model directory is missing, corrupted or not a churn-value model.
    SchemaError
        If the data lack a column or field the model was trained with.
    """
    model, saved, _ = load_churn_value(model_dir)
    data_cfg = config or _data_config(saved["data"])
    return score_with_model(
        model, data_cfg, transactions, as_of=as_of, customers=customers, events=events, out=out,
        proposer=load_item_proposer(Path(model_dir) / NEXT_EVENT_DIR),
    )  # fmt: skip


def score_with_model(
    model: ChurnValueModel,
    data_cfg: RunConfig,
    transactions: Any,
    *,
    as_of: str | None = None,
    customers: Any = None,
    events: Any = None,
    out: Path | str | None = None,
    proposer: ItemProposer | None = None,
) -> PredictRun:
    """Score new data with a fitted model in memory (what :func:`score` and the estimator do).

    ``proposer`` proposes the plans' next items (optional: without it plans hold catalogue actions only).
    """
    started = time.perf_counter()
    cfg = dataclasses.replace(data_cfg, window=dataclasses.replace(data_cfg.window, horizon_days=model.horizon_days))
    with tempfile.TemporaryDirectory(prefix="custseq-score-") as tmp:
        scoring = prepare_scoring_sequences(
            transactions, vocab=model.vocab, out=tmp, customers=customers, events=events, as_of=as_of, config=cfg,
            with_features=True,
        )  # fmt: skip
        scores = score_window(model, WindowData(Path(tmp)))
        metrics = {
            "as_of": scoring.window.as_of.isoformat(),
            "horizon_days": model.horizon_days,
            "customers_scored": len(scores.customer_ids),
            "unknown_values": dict(scoring.unknown_values),
            "tables": scoring.report.to_dict(),
            "seconds": round(time.perf_counter() - started, 2),
        }
        run = _run(scores, Path(tmp), metrics, model, cfg, scoring.window.as_of.isoformat(), out, proposer)
        if out is not None:
            _copy_quarantine(Path(tmp) / "quarantine", Path(out) / "quarantine")
    return run


def _save_models(
    folder: Path,
    fit: FitResult,
    pretrained: PretrainRun | None,
    proposer: ItemProposer | None,
    cfg: RunConfig,
    data_cfg: RunConfig,
    fingerprint: str,
) -> None:
    """The churn-value model, and the pre-trained model whose next-event head proposes items for ``score``."""
    save_churn_value(folder, fit, cfg.model, config_to_dict(data_cfg), fingerprint)
    if pretrained is not None:
        shutil.copytree(pretrained.model_dir, folder / NEXT_EVENT_DIR, dirs_exist_ok=True)
        if proposer is not None and proposer.mixture is not None:
            write_json(folder / NEXT_EVENT_DIR / MIXTURE_FILE, dataclasses.asdict(proposer.mixture))


def _item_proposer(
    pretrained: PretrainRun | None, vocab: SequenceVocab, layout: PreparedWindows, cfg: RunConfig, say: Stage
) -> ItemProposer | None:
    """The pre-trained model with its copy mixture fitted on the latest training window (whose next events lie
    before the scoring cutoff: no leakage); None without a next-event head."""
    if pretrained is None:
        return None
    model = load_pretrained(pretrained.model_dir)[0]
    if model.next_head is None:
        return None
    field = item_field(vocab, cfg.actions.item_field)
    if field is None or not layout.training:
        return ItemProposer(model)
    say("fitting the next-item mixture on the latest training window")
    mixture = fit_item_mixture(
        model, vocab, layout.training[0], layout.scoring, field, horizon_days=layout.horizon_days, k=cfg.actions.k
    )
    return ItemProposer(model, mixture)


def load_item_proposer(folder: Path) -> ItemProposer | None:
    """The proposer saved by ``predict`` in ``<model>/next-event`` (None when the model has none)."""
    if not folder.is_dir():
        return None
    model = load_pretrained(folder)[0]
    if model.next_head is None:
        return None
    mixture_file = folder / MIXTURE_FILE
    if not mixture_file.is_file():
        return ItemProposer(model)
    try:
        mixture = ItemMixture(**json.loads(mixture_file.read_text()))
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{mixture_file} is not a valid item mixture ({e}); run predict again") from None
    return ItemProposer(model, mixture)


def _fit(work: Path, cfg: RunConfig, say: Stage, progress: bool) -> tuple[FitResult, PretrainRun | None]:
    m = cfg.model
    pretrained = None
    if m.pretraining:
        say("pre-training the sequence encoder (masked + next event)")
        pretrained = pretrain_prepared(
            work / "prepared", work / "pretrained", encoder=m.encoder, pretrain=m.pretrain,
            training=m.pretrain_training, work_dir=work / "pretrain", progress=progress,
        )  # fmt: skip
    say("fine-tuning the churn + value model")
    encoder_dir = pretrained.model_dir if pretrained is not None else None
    fit = finetune_prepared(
        work / "prepared", m, encoder_dir=encoder_dir, work_dir=work / "finetune", progress=progress
    )
    return fit, pretrained


def _metrics(summary: dict[str, Any], fit: FitResult, scores: WindowScores, seconds: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "as_of": summary["as_of"],
        "horizon_days": summary["horizon_days"],
        "customers_scored": len(scores.customer_ids),
        "training_windows": fit.cutoffs,
        "pretrained": fit.pretrained,
        "validation": fit.metrics,
        "task_weighting": {
            "mode": fit.model.network.weighting.mode,
            "weights": [float(w) for w in fit.model.network.weighting.weights()],
        },
        "calibration": fit.model.calibrator.method,
        "tables": summary["tables"],
        "seconds": round(seconds, 2),
    }
    if scores.churned is not None:  # the scoring window's labels are in the data: a back-test
        metrics["backtest"] = churn_value_metrics(
            scores.churned, scores.columns["churn_probability"], scores.value, scores.columns["clv_expected"]
        )
    return metrics


def _run(
    scores: WindowScores,
    window: Path,
    metrics: dict[str, Any],
    model: ChurnValueModel,
    cfg: RunConfig,
    as_of: str,
    out: Any,
    proposer: ItemProposer | None,
) -> PredictRun:
    """Predictions with every derived column from the scoring ``window`` folder; ``out`` receives the outputs."""
    feature_table = pq.read_table(window / "features.parquet")
    btyd = _btyd(feature_table, model.horizon_days, metrics)
    frame = with_p_alive(scores.table(), btyd).to_pandas()
    frame = with_segments_and_value_score(frame, feature_table.to_pandas(), cfg, model.horizon_days)
    metrics["value_score"] = {
        "formula": value_score_formula(cfg.value_score), "parameters": dataclasses.asdict(cfg.value_score)
    }  # fmt: skip
    simulation = simulate_retention(frame, cfg.profit)
    frame["contact_profit"] = simulation.contact_profit
    frame = with_plans(frame, proposer, model.vocab, window, cfg, metrics)
    predictions = pa.Table.from_pandas(frame, preserve_index=False)
    embeddings = scores.embedding_table()
    review = review_table(frame, btyd, cfg.audit)
    metrics["review_customers"] = len(review)
    if out is not None:
        out = Path(out)
        write_outputs(out, predictions, embeddings, metrics)
        review.to_csv(out / "review.csv", index=False)
        write_json(out / "profit.json", profit_json(simulation, cfg.profit))
        write_json(out / "attention.json", attention_json(model, window, frame, cfg.report))
    return PredictRun(frame, embeddings.to_pandas(), metrics, Path(out) if out else None, model, cfg, as_of, proposer)


def _btyd(features: pa.Table, horizon_days: int, metrics: dict[str, Any]) -> BtydPredictions | None:
    """BG/NBD + Gamma-Gamma on the window's RFM summary (rows before its cutoff); None, said in metrics, if it fails."""
    try:
        btyd = predict_btyd(features, horizon_days)
    except TrainingError as e:
        metrics["p_alive"] = f"not available: {e}"
        return None
    metrics["p_alive"] = {"model": "BG/NBD", "penalizer": btyd.penalizer, **vars(btyd.params)}
    if btyd.params.a < 1e-6:  # the fit found no dropout process: every P(alive) is ~1 and says nothing
        metrics["p_alive"]["note"] = "BG/NBD found no dropout (a ~ 0) on these data; p_alive is ~1 for everyone"
    return btyd


def with_p_alive(predictions: pa.Table, btyd: BtydPredictions | None) -> pa.Table:
    """Add ``p_alive``: P(alive) from BG/NBD (:func:`_btyd`); empty where BG/NBD could not be fitted."""
    if btyd is None:
        return predictions.append_column("p_alive", pa.nulls(predictions.num_rows, pa.float64()))
    by_id = dict(zip(btyd.customer_ids, btyd.p_alive.tolist(), strict=True))
    column = pa.array([by_id.get(c) for c in predictions.column("customer_id").to_pylist()], pa.float64())
    return predictions.append_column("p_alive", column)


def with_plans(
    predictions: pd.DataFrame,
    proposer: ItemProposer | None,
    vocab: SequenceVocab,
    window: Path,
    cfg: RunConfig,
    metrics: dict[str, Any],
) -> pd.DataFrame:
    """Add ``next_items`` (the proposer's likeliest next items), ``retention_flag`` and ``next_actions``.

    Without a pre-trained next-event head (pre-training off, or without the next objective) or an item field
    (e.g. CDNOW: no product, category, event or channel), plans hold the catalogue's actions only.
    """
    a = cfg.actions
    field = item_field(vocab, a.item_field)
    predictions = predictions.copy()
    predictions["next_items"] = "[]"
    note = None
    if field is None:
        note = "no product, category, event or channel field: plans hold catalogue actions only"
    elif proposer is None:
        note = "no pre-trained next-event head (pre-training off or without 'next'): catalogue actions only"
    else:
        items = propose_next(proposer.model, vocab, window, field, a.k, mixture=proposer.mixture)
        by_id = dict(zip(items.customer_ids, next_items_column(items), strict=True))
        predictions["next_items"] = [by_id.get(c, "[]") for c in predictions["customer_id"].astype(str)]
    mixture = proposer.mixture if field is not None and proposer is not None else None
    metrics["actions"] = _actions_metrics(
        a, field, note=note, item_mixture=dataclasses.asdict(mixture) if mixture is not None else None
    )
    return plan_actions(predictions, a, load_catalogue(a.catalogue))


def replan(folder: Path | str, actions: ActionConfig, out: Path | str | None = None) -> pd.DataFrame:
    """Re-plan saved predictions (``folder/predictions.parquet``) with other action settings or catalogue.

    The next-event proposals saved in ``next_items`` are reused, so no model is needed. Writes
    predictions.parquet / .csv and the ``actions`` entry of metrics.json to ``out`` (default: ``folder``); a
    new ``out`` also receives the run's other files (validation curves, audit…) so that its report is whole.

    Raises
    ------
    ConfigError
        If the folder has no predictions, or the catalogue is invalid.
    SchemaError
        If the predictions lack a column the plans need.
    """
    folder = Path(folder)
    source = folder / "predictions.parquet"
    if not source.is_file():
        raise ConfigError(f"{source} not found; pass the --out folder of predict or score")
    catalogue = load_catalogue(actions.catalogue)
    planned = plan_actions(pq.read_table(source).to_pandas(), actions, catalogue)
    target = Path(out) if out is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != folder.resolve():
        for other in folder.iterdir():
            if other.is_file() and other.name not in REPLANNED and not (target / other.name).exists():
                shutil.copy2(other, target / other.name)
    table = pa.Table.from_pandas(planned, preserve_index=False)
    pq.write_table(table, target / "predictions.parquet")
    pacsv.write_csv(table, target / "predictions.csv")
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    previous = metrics.get("actions", {})  # how the items were proposed stays as predict said
    metrics["actions"] = _actions_metrics(
        actions, previous.get("item_field"), note=previous.get("note"), item_mixture=previous.get("item_mixture")
    )
    write_json(target / "metrics.json", metrics)
    return planned


def _actions_metrics(
    a: ActionConfig, item_field: str | None, *, note: str | None, item_mixture: dict[str, Any] | None
) -> dict[str, Any]:
    """metrics.json's ``actions``: the plan settings, the catalogue, and how the next items were proposed."""
    catalogue = a.catalogue or "the default shipped with custseq (custseq/scoring/data/actions.json)"
    out: dict[str, Any] = {"item_field": item_field, "retention_threshold": a.retention_threshold, "mode": a.mode,
                           "k": a.k, "catalogue": catalogue}  # fmt: skip
    if note:
        out["note"] = note
    if item_mixture is not None:
        out["item_mixture"] = item_mixture
    return out


def with_segments_and_value_score(
    predictions: pd.DataFrame, features: pd.DataFrame, cfg: RunConfig, horizon_days: int
) -> pd.DataFrame:
    """Add ``segment`` (:mod:`custseq.scoring.segments`) and ``value_score`` (:mod:`custseq.scoring.scores`)."""
    predictions = predictions.copy()
    predictions["segment"] = assign_segments(predictions, features, cfg.segments, horizon_days=horizon_days)
    predictions["value_score"] = value_scores(predictions, features, cfg.value_score).to_numpy(dtype=np.float64)
    return predictions


def write_outputs(out: Path, predictions: pa.Table, embeddings: pa.Table, metrics: dict[str, Any]) -> None:
    """predictions.parquet / .csv, embeddings.parquet and metrics.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(predictions, out / "predictions.parquet")
    pacsv.write_csv(predictions, out / "predictions.csv")
    pq.write_table(embeddings, out / "embeddings.parquet")
    write_json(out / "metrics.json", metrics)


def _data_config(saved: dict[str, Any]) -> RunConfig:
    try:
        return config_from_dict(RunConfig, saved, where="the model's data settings")
    except ConfigError as e:
        raise ConfigError(f"{e}; the model was saved by another custseq version, pass --config") from None


def _copy_quarantine(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)


@contextlib.contextmanager
def _work_folder(path: Path | str | None) -> Iterator[Path]:
    """The given work folder (kept), or a temporary one (removed afterwards)."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="custseq-predict-") as tmp:
        yield Path(tmp)
