"""Predict: prepare → pre-train → fine-tune → score every customer, and the outputs of DESIGN §4.

Work files (prepared windows, checkpoints) live in a temporary folder unless a ``work_dir`` is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig, config_from_dict, config_to_dict
from custseq.errors import ConfigError
from custseq.io.prepared import PreparedWindows
from custseq.io.tables import Tables
from custseq.metrics import churn_value_metrics
from custseq.models.finetune import (
    FitResult,
    WindowScores,
    finetune_prepared,
    fingerprint_of,
    save_churn_value,
    score_window,
)
from custseq.models.next_event import fit_item_mixture, item_field
from custseq.models.pretrain import PretrainRun, load_pretrained, pretrain_prepared
from custseq.pipelines.diagnostics import audit_validation, training_history, validation_predictions, write_json
from custseq.pipelines.outputs import ItemProposer, PredictRun, copy_quarantine, score_outputs
from custseq.pipelines.prepare import prepare
from custseq.sequences.vocab import SequenceVocab

Stage = Callable[[str], None]
NEXT_EVENT_DIR = "next-event"  # inside the model folder: the pre-trained model with its next-event head
MIXTURE_FILE = "item-mixture.json"  # in NEXT_EVENT_DIR: how much of each customer's own history to mix in


def predict(
    tables: Tables,
    config: RunConfig,
    *,
    out: Path | str | None = None,
    work_dir: Path | str | None = None,
    progress: bool = False,
    on_stage: Stage | None = None,
) -> PredictRun:
    """Train on the windows before ``config.window.as_of`` and score every customer with history at it.

    Returns the predictions with the embeddings, metrics and the fitted model; ``out`` (optional) receives
    the DESIGN §4 outputs and ``model/``.

    Raises
    ------
    CustseqError
        On any problem the user can fix (bad input, impossible windows).
    """
    cfg = config
    say = on_stage or (lambda _msg: None)
    started = time.perf_counter()
    with _work_folder(work_dir) as work:
        prepared = prepare(tables, cfg, work / "prepared", progress=say)
        layout = prepared.layout
        fit, pretrained = _fit(layout, work, cfg, say, progress)
        say("scoring every customer")
        scores = score_window(fit.model, layout.scoring)
        data_cfg = saved_data_config(prepared.summary["config"])
        metrics = _metrics(prepared.summary, fit, scores, time.perf_counter() - started)
        proposer = _item_proposer(pretrained, fit.model.vocab, layout, data_cfg, say)
        if out is not None:
            say("scoring the validation customers and auditing the predictions across customer groups")
            validation = validation_predictions(fit.model, layout.training[0], data_cfg)
            audited = audit_validation(validation, layout.training[0], data_cfg.audit)
            metrics["audit"] = {"labelled_customers": len(validation), "flagged_groups": audited.flagged_groups}
        run = score_outputs(
            scores, layout.scoring, metrics, fit.model, data_cfg, prepared.summary["as_of"], out, proposer
        )
        if out is not None:
            out = Path(out)
            _save_models(out / "model", fit, pretrained, proposer, cfg, data_cfg, fingerprint_of(layout))
            copy_quarantine(layout.quarantine_dir, out / "quarantine")
            pretrain_result = pretrained.result if pretrained is not None else None
            write_json(out / "history.json", training_history(pretrain_result, fit.result))
            pq.write_table(pa.Table.from_pandas(validation, preserve_index=False), out / "validation.parquet")
            write_json(out / "audit.json", audited.to_json())
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
        model,
        vocab,
        layout.training[0].folder,
        layout.scoring.folder,
        field,
        horizon_days=layout.horizon_days,
        k=cfg.actions.k,
    )
    return ItemProposer(model, mixture)


def _fit(
    layout: PreparedWindows, work: Path, cfg: RunConfig, say: Stage, progress: bool
) -> tuple[FitResult, PretrainRun | None]:
    m = cfg.model
    pretrained = None
    if m.pretraining:
        say("pre-training the sequence encoder (masked + next event)")
        pretrained = pretrain_prepared(
            layout, work / "pretrained", encoder=m.encoder, pretrain=m.pretrain,
            training=m.pretrain_training, work_dir=work / "pretrain", progress=progress,
        )  # fmt: skip
    say("fine-tuning the churn + value model")
    encoder_dir = pretrained.model_dir if pretrained is not None else None
    fit = finetune_prepared(layout, m, encoder_dir=encoder_dir, work_dir=work / "finetune", progress=progress)
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
    if scores.churned is not None and scores.value is not None:  # the scoring window is labelled: a back-test
        metrics["backtest"] = churn_value_metrics(
            scores.churned, scores.columns["churn_probability"], scores.value, scores.columns["clv_expected"]
        )
    return metrics


def saved_data_config(saved: dict[str, Any]) -> RunConfig:
    """The data settings saved with a prepare output or a model (a clear error if this version cannot read them)."""
    try:
        return cast(RunConfig, config_from_dict(RunConfig, saved, where="the model's data settings"))
    except ConfigError as e:
        raise ConfigError(f"{e}; the model was saved by another custseq version, pass --config") from None


@contextlib.contextmanager
def _work_folder(path: Path | str | None) -> Iterator[Path]:
    """The given work folder (kept), or a temporary one (removed afterwards)."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="custseq-predict-") as tmp:
        yield Path(tmp)
