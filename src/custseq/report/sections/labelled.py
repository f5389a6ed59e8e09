"""Sections on labelled customers: ROC and PR curves, calibration, gain and lift, value by decile.

The customers are `custseq evaluate`'s test customers when the folder has them, else the predict run's
held-out validation customers; each figure compares custseq with the best other method.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from custseq import metrics
from custseq.config import ReportConfig
from custseq.report import analysis, figures, interactive
from custseq.report.analysis import Labelled
from custseq.report.data import EVALUATE, ReportData
from custseq.report.html import PERCENT, figure, paragraph, table
from custseq.report.html import unavailable as na

log = logging.getLogger(__name__)


def validation_customers(data: ReportData) -> Labelled | None:
    if data.validation is None:
        return None
    try:
        return analysis.labelled_from_validation(data.validation)
    except KeyError as error:
        log.warning("report: validation.parquet unusable: %s", error)
        return None


def _labelled(data: ReportData) -> tuple[Labelled | None, str]:
    """The test customers of `custseq evaluate` when there, else the predict run's validation customers."""
    if data.test_predictions is not None:
        try:
            test = analysis.labelled_from_test(data.test_predictions)
            return test, (
                f"On the {len(test.churned):,} test customers of `custseq evaluate` (test_predictions.parquet)."
            )
        except KeyError as error:
            log.warning("report: test_predictions.parquet unusable: %s", error)
    labelled = validation_customers(data)
    if labelled is not None:
        return labelled, (
            f"On the {len(labelled.churned):,} held-out validation customers of the latest training window "
            f"(validation.parquet). The network was not fitted on them, but early stopping and the churn "
            f"calibration were, so these curves are slightly optimistic; run `{EVALUATE}` to see every baseline "
            "on a later test window."
        )
    why = data.missing("validation.parquet")
    if data.test_predictions is None:
        why += f" (and test_predictions.parquet, written by `{EVALUATE}`, is not there either)"
    return None, why


def _pair(labelled: Labelled, task: str) -> list[str]:
    other = labelled.best_other(task)
    scores = labelled.churn if task == "churn" else labelled.clv
    return [m for m in (labelled.primary, other) if m is not None and m in scores]


def _pair_caption(methods: list[str], metric: str) -> str:
    if len(methods) < 2:
        return f"{methods[0]} only: no other method has predictions here."
    return f"{methods[0]} and {methods[1]}, the best other method by {metric}."


def roc_pr(data: ReportData, cfg: ReportConfig) -> str:
    labelled, source = _labelled(data)
    if labelled is None:
        return na(source)
    curves = analysis.roc_pr_curves(labelled.churned, labelled.churn)
    static = figures.roc_pr_figure(curves)
    plot = interactive.roc_pr_plotly(curves) if cfg.interactive else None
    frame = pd.DataFrame(
        [{"method": r.method, "customers": r.customers, "churn_rate": r.churn_rate, "auc": r.auc, "ap": r.ap}
         for r in curves.rows]
    )  # fmt: skip
    labels = {"churn_rate": "churn rate", "auc": "ROC AUC", "ap": "PR AUC (average precision)"}
    return (
        paragraph(source, lead=True)
        + figure(static, "Churn probability as a ranking: higher curves are better.", plot, "plot-roc-pr")
        + table(frame, labels=labels, formats={"churn_rate": PERCENT}, bold=_best_rows(frame, ["auc", "ap"]))
    )


def _best_rows(frame: pd.DataFrame, columns: list[str]) -> set[tuple[int, str]]:
    bold = set()
    for c in columns:
        values = frame[c].astype(float)
        if values.notna().sum() > 1:
            bold |= {(i, c) for i, v in enumerate(values) if v == values.max()}
    return bold


def _compared(data: ReportData, kind: str) -> tuple[Any, list[str], str]:
    """The labelled customers, the methods a figure compares (custseq and the best other) and the source line;
    no customers and the reason instead when there is nothing to compare."""
    labelled, source = _labelled(data)
    if labelled is None:
        return None, [], source
    methods = _pair(labelled, kind)
    if not methods:
        what = "churn probabilities" if kind == "churn" else "expected value predictions"
        return None, [], f"{labelled.source} has no {what}"
    return labelled, methods, source


def calibration(data: ReportData, cfg: ReportConfig) -> str:
    labelled, methods, source = _compared(data, "churn")
    if labelled is None:
        return na(source)
    tables = {m: analysis.reliability_table(*analysis.known(labelled.churned, labelled.churn[m])) for m in methods}
    parts = [paragraph(source, lead=True)]
    how = data.metrics.calibration if data.metrics is not None else None
    validation = data.metrics.validation if data.metrics is not None else None
    if how:
        text = f"custseq's churn probabilities are calibrated ({how})"
        if validation is not None:
            text += (
                f"; on validation the Brier score went from {validation.churn_brier_before:.4f} before "
                f"calibration to {validation.churn_brier_after:.4f} after"
            )
        parts.append(paragraph(text + "."))
    parts.append(figure(figures.calibration_figure(tables), "Points on the diagonal are well calibrated.", half=True))
    grid = []
    for method, t in tables.items():
        y, p = analysis.known(labelled.churned, labelled.churn[method])
        frame = t.assign(bin=[f"{lo:.1f}–{hi:.1f}" for lo, hi in zip(t["low"], t["high"], strict=True)])
        frame["gap"] = frame["observed"] - frame["mean_predicted"]
        frame = frame[["bin", "customers", "mean_predicted", "observed", "gap"]]
        caption = f"{method}: Brier score {metrics.brier(y, p):.4f}"
        labels = {"mean_predicted": "predicted", "observed": "observed", "gap": "observed − predicted"}
        grid.append(table(frame, labels=labels, caption=caption, formats={"gap": "+.3f"}))
    return "".join(parts) + f'<div class="grid">{"".join(grid)}</div>'


def gain_lift(data: ReportData, cfg: ReportConfig) -> str:
    labelled, methods, source = _compared(data, "churn")
    if labelled is None:
        return na(source)
    curves = {m: analysis.gain_curve(*analysis.known(labelled.churned, labelled.churn[m])) for m in methods}
    rows = pd.DataFrame({"share_contacted": analysis.gain_at(next(iter(curves.values())))["target"]})
    for method, curve in curves.items():
        at = analysis.gain_at(curve)
        rows[f"{method} gain"], rows[f"{method} lift"] = at["share_churners"], at["lift"]
    formats = {c: ".1%" if c.endswith("gain") else ".2f" for c in rows.columns}
    formats["share_contacted"] = ".0%"
    return (
        paragraph(source, lead=True)
        + paragraph(
            "Contacting customers by descending churn probability: the share of all churners found in the top "
            "share contacted (gain), and how many times more than a random order finds (lift)."
        )
        + figure(figures.gain_lift_figure(curves), _pair_caption(methods, "churn AUC"))
        + table(rows, labels={"share_contacted": "share contacted"}, formats=formats)
    )


def value_deciles(data: ReportData, cfg: ReportConfig) -> str:
    labelled, methods, source = _compared(data, "value")
    if labelled is None:
        return na(source)
    tables = {m: analysis.value_decile_table(*analysis.known(labelled.value, labelled.clv[m])) for m in methods}
    parts = [
        paragraph(source, lead=True),
        figure(
            figures.value_deciles_figure(tables),
            "Customers split into ten equal groups by predicted value. " + _pair_caption(methods, "value Gini"),
        ),
    ]
    labels = {
        "mean_predicted": "mean predicted",
        "mean_actual": "mean actual",
        "share_of_value": "share of value",
    }
    grid = "".join(table(t, labels=labels, formats={"share_of_value": PERCENT}, caption=m) for m, t in tables.items())
    return "".join(parts) + f'<div class="grid">{grid}</div>'
