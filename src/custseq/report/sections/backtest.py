"""Back-test: `custseq evaluate`'s comparison with the baselines, or meanwhile the predict run's validation."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from custseq.config import ReportConfig
from custseq.io.run_files import AucBootstrap, Comparison, EvaluationResult, MeanStd
from custseq.metrics import METRICS, mean_std_text, metric_label
from custseq.report import analysis
from custseq.report.data import EVALUATE, ReportData
from custseq.report.html import bullets, heading, key_values, number, paragraph, table
from custseq.report.html import unavailable as na
from custseq.report.sections.labelled import validation_customers

BACKTEST_COLUMNS = (
    "churn_auc",
    "churn_pr_auc",
    "churn_f1",
    "churn_brier",
    "value_gini",
    "value_rmse",
    "value_mae",
    "cohort_wape",
    "composite",
    "seconds",
)


LOWER_IS_BETTER = {k for k, m in METRICS.items() if m.lower_is_better}


def backtest(data: ReportData, cfg: ReportConfig) -> str:
    if data.evaluation is not None:
        return _evaluation(data.evaluation)
    why = data.problems.get("evaluation.json")
    parts = [
        na(
            (f"evaluation.json could not be read ({why})" if why else "evaluation.json is not in the run folder")
            + f"; run `{EVALUATE}` for the full comparison with the baselines"
        )
    ]
    labelled = validation_customers(data)
    if labelled is not None:
        frame = analysis.method_metrics(labelled)
        parts += [
            paragraph(
                f"Meanwhile, the predict run's own validation: {len(labelled.churned):,} held-out customers of the "
                "latest training window, custseq against the BG/NBD + Gamma-Gamma baseline scored on the same "
                "customers."
            ),
            _metrics_table(frame, ["customers", *METRICS]),
        ]
    elif data.metrics is not None and data.metrics.validation is not None:
        validation = {metric_label(k): v for k, v in vars(data.metrics.validation).items()}
        parts += [paragraph("Meanwhile, the predict run's validation metrics (custseq only):"), key_values(validation)]
    else:
        parts.append(na(f"{data.missing('validation.parquet')}, and metrics.json has no validation metrics"))
    if data.metrics is not None and data.metrics.backtest is not None:
        parts += [heading("Back-test recorded by predict"), key_values(vars(data.metrics.backtest))]
    return "".join(parts)


def _evaluation(ev: EvaluationResult) -> str:
    lead = (
        f"Protocol {ev.protocol}, test window as of {ev.as_of}, horizon {ev.horizon_days} days, "
        f"seeds {list(ev.seeds)}; {number(ev.details.test_customers)} test customers (churn rate "
        f"{number(ev.details.test_churn_rate)})"
    )
    spread = (
        "Mean ± standard deviation over seeds"
        if len(ev.seeds) > 1
        else "One seed: no spread and no t-test (give several --seeds for both)"
    )
    parts = [paragraph(f"{lead}. {spread}; the best of each column in bold.", lead=True)]
    if ev.details.trained_horizon_days is not None:
        parts.append(paragraph(_carried_sentence(ev)))
    if ev.summary:
        parts += [_summary_table(ev.summary, len(ev.seeds)), paragraph("↑ higher is better, ↓ lower is better.")]
    else:
        parts.append(na("evaluation.json has no summary"))
    if ev.comparisons:
        parts += [heading("Paired comparisons"), _comparisons_table(ev.comparisons)]
        parts.append(
            paragraph("Differences are the reference minus the method: positive means the reference is ahead.")
        )
    if ev.skipped:
        parts += [heading("Methods not run"), bullets(f"{m}: {why}" for m, why in ev.skipped.items())]
    return "".join(parts)


def _carried_sentence(ev: EvaluationResult) -> str:
    return (
        f"No training window fits {ev.horizon_days} days before the test window: custseq trained on "
        f"{ev.details.trained_horizon_days} days and carried its predictions to {ev.horizon_days} days, as "
        f"predict does ({ev.details.carried_by})."
    )


def _summary_table(summary: dict[str, dict[str, MeanStd]], seeds: int) -> str:
    """One row per method, "mean ± std" per metric (the mean alone with one seed), the best mean of each column in
    bold."""
    columns = [c for c in BACKTEST_COLUMNS if any(c in s for s in summary.values())]
    rows = [
        {"method": method, **{c: mean_std_text(c, s.get(c), seeds) for c in columns}} for method, s in summary.items()
    ]
    bold = set()
    for c in columns:
        means = {i: s[c].mean for i, s in enumerate(summary.values()) if c in s and not _nan(s[c].mean)}
        if means:
            best = (min if c in LOWER_IS_BETTER else max)(means.values())
            bold |= {(i, c) for i, v in means.items() if v == best}
    labels = {c: METRICS[c].label + (" ↓" if c in LOWER_IS_BETTER else " ↑") for c in columns}
    return table(pd.DataFrame(rows, columns=["method", *columns]), labels=labels, bold=bold)


def _comparisons_table(comparisons: dict[str, Comparison]) -> str:
    rows = [
        {
            "comparison": f"{c.reference} − {method}",
            "auc": _signed(c.churn_auc_difference, c.churn_auc_p),
            "gini": _signed(c.value_gini_difference, c.value_gini_p),
            "bootstrap": _bootstrap(c.auc_bootstrap),
        }
        for method, c in comparisons.items()
    ]
    labels = {"auc": "Δ churn AUC (t-test p)", "gini": "Δ value Gini (t-test p)", "bootstrap": "Δ AUC bootstrap 95%"}
    return table(pd.DataFrame(rows), labels=labels)


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _signed(difference: float, p: float) -> str:
    if _nan(difference):
        return "–"
    return f"{difference:+.3f}" + (f" ({p:.3g})" if not _nan(p) else "")


def _bootstrap(b: AucBootstrap) -> str:
    return f"{b.difference:+.3f} [{b.low:+.3f}, {b.high:+.3f}] (p {b.p_value:.3g})"


def _metrics_table(frame: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in columns if c in frame.columns]
    bold = set()
    for c in columns:
        if c == "customers":
            continue
        values = frame[c].astype(float)
        if values.notna().sum() > 1:
            best = values.min() if c in LOWER_IS_BETTER else values.max()
            bold |= {(i, c) for i, v in enumerate(values) if v == best}
    labels = {c: METRICS[c].label if c in METRICS else c for c in columns}
    return table(frame[["method", *columns]], labels=labels, bold=bold)
