"""Plan: re-plan saved predictions with other action settings or another catalogue (no model needed)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd

from custseq.config import ActionConfig
from custseq.errors import ConfigError
from custseq.io.atomic import fingerprint, require_complete, staged_output
from custseq.io.run_files import (
    DECISIONS_FILE,
    METRICS_FILE,
    PREDICTIONS_CSV_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    RunFolder,
    read_csv,
    write_csv,
)
from custseq.pipelines.outputs import action_settings
from custseq.scoring.actions import load_catalogue, plan_actions
from custseq.scoring.decisions import AppliedDecisions, apply_decisions, decision_labels
from custseq.scoring.products import load_products

REPLANNED = (PREDICTIONS_FILE, PREDICTIONS_CSV_FILE, METRICS_FILE, REPORT_FILE, DECISIONS_FILE)  # what replan writes


def replan(
    folder: Path | str, actions: ActionConfig, out: Path | str | None = None, decisions: Path | str | None = None
) -> pd.DataFrame:
    """Re-plan saved predictions (``folder/predictions.parquet``) with other action settings or catalogue.

    The next-event proposals saved in ``next_items`` are reused, so no model is needed. Writes
    predictions.parquet / .csv and, when the folder has one, metrics.json's ``actions`` to ``out`` (default:
    ``folder``); a new ``out`` also receives the run's other files (validation curves, audit…) so that its
    report is whole. ``decisions`` (a filled-in review.csv, :mod:`custseq.scoring.decisions`) changes churn and
    value where reviewers decided before the plans are made; the counts go to metrics.json and the decisions,
    with the run's as-of date, horizon and the competing numbers, to decisions.csv (labels for a later run).

    Raises
    ------
    ConfigError
        If the folder has no predictions, or the catalogue is invalid.
    SchemaError
        If the predictions lack a column the plans need.
    """
    source, destination = RunFolder(Path(folder)), Path(out) if out is not None else Path(folder)
    record = require_complete(source.path, "custseq plan")
    if not source.has(PREDICTIONS_FILE):
        raise ConfigError(f"{source.path / PREDICTIONS_FILE} not found; pass the --out folder of predict or score")
    products = load_products(actions.products) if actions.products else None
    predictions = saved = source.read_predictions()
    applied = _decisions(predictions, decisions) if decisions is not None else None
    if applied is not None:
        predictions = applied.predictions
    planned = plan_actions(predictions, actions, load_catalogue(actions.catalogue), products)
    inputs = fingerprint(record.inputs, dataclasses.asdict(actions), str(decisions) if decisions else None)
    # a staging copy of the destination, swapped in whole at the end (re-planning in place included)
    with staged_output(destination, command="plan", inputs=inputs, keep=True) as staging:
        assert staging is not None  # a destination is always given
        _write_plans(source, RunFolder(staging), planned, actions, applied, saved)
    return planned


def _write_plans(
    source: RunFolder,
    target: RunFolder,
    planned: pd.DataFrame,
    actions: ActionConfig,
    applied: AppliedDecisions | None,
    saved: pd.DataFrame,
) -> None:
    """The new plans, metrics.json's ``actions`` and the decided rows; from a new folder, the run's other files."""
    _copy_other_files(source.path, target.path)
    target.write_predictions(planned)
    metrics = source.read_metrics() if source.has(METRICS_FILE) else None
    if metrics is not None:  # how the items were proposed stays as predict said
        before = metrics.actions
        settings = action_settings(
            actions, before.item_field, note=before.note, item_mixture=before.item_mixture,
            item_level=before.item_level,
        )  # fmt: skip
        counts = None if applied is None else {**applied.counts, "unknown customers": applied.unknown_customers}
        target.write_metrics(dataclasses.replace(metrics, actions=settings, review_decisions=counts))
    if applied is not None:  # kept as labels: a later predict measures them (custseq.scoring.review_outcomes)
        as_of, horizon = (metrics.as_of, metrics.horizon_days) if metrics is not None else (None, None)
        write_csv(decision_labels(applied, saved, as_of, horizon), target.path / DECISIONS_FILE)


def _decisions(predictions: pd.DataFrame, path: Path | str) -> AppliedDecisions:
    try:
        decided = read_csv(path)  # ids like '=1+1 as custseq wrote them in review.csv
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the decisions file {path}: {e}") from None
    return apply_decisions(predictions, decided, source=str(path))


def _copy_other_files(folder: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for other in folder.iterdir():
        if other.is_file() and other.name not in REPLANNED and not (target / other.name).exists():
            shutil.copy2(other, target / other.name)
