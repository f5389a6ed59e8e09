"""The page header: the run (as-of date, horizon, customers) and the numbers a reader wants first."""

from __future__ import annotations

import math
from typing import Any

from custseq.report.data import ReportData
from custseq.report.html import escaped, number
from custseq.scoring.profit import money


def header(data: ReportData) -> str:
    """The page header: title, the run (as-of date, horizon, customers) and its headline numbers."""
    m, ev = data.metrics, data.evaluation
    run = m or ev  # what says the run's date and horizon: predict's metrics, else evaluate's summary
    customers = len(data.predictions) if data.predictions is not None else None
    if m is not None:
        customers = m.customers_scored
    windows = m.training_windows if m is not None else None
    facts = {
        "as of": run.as_of if run is not None else "–",
        "horizon": f"{run.horizon_days} days" if run is not None else "–",
        "customers scored": number(customers),
        "training windows": number(len(windows)) if windows is not None else "–",
    }
    return (
        "<h1>custseq report: churn and customer lifetime value</h1>"
        f'<p class="sub">Run folder <code>{escaped(data.run_dir.name)}</code></p>{_facts(facts)}'
        f"{_facts(_headline(data))}"
    )


def _headline(data: ReportData) -> dict[str, str]:
    """What a reader wants first: expected churn and value, whom to contact, how good the predictions were."""
    out: dict[str, str] = {}
    p = data.predictions
    currency = data.profit.parameters.currency if data.profit is not None else None
    if p is not None and len(p):
        out["expected churn rate"] = f"{p['churn_probability'].mean():.1%}"
        out["total expected value"] = money(p["clv_expected"].sum(), currency)
    c = data.contacts
    if c is not None:
        out["to contact"] = f"{len(c):,} (expected gain {money(c['expected_gain'].sum(), currency)})"
    elif p is not None and "retention_flag" in p:
        out["flagged for retention"] = f"{int(p['retention_flag'].sum()):,}"
    auc, gini = _validation_figures(data)
    if not math.isnan(auc):
        out["validation churn AUC"] = f"{auc:.3f}"
    if not math.isnan(gini):
        out["value nGini"] = f"{gini:.3f}"
    return out


def _validation_figures(data: ReportData) -> tuple[float, float]:
    """Churn AUC and value nGini on the validation customers: of the final predictions, else of the network."""
    m = data.metrics
    if m is None:
        return math.nan, math.nan
    if m.model_choice is not None:
        return m.model_choice.churn_auc, m.model_choice.value_gini
    if m.validation is not None:
        return m.validation.churn_auc, m.validation.value_gini
    return math.nan, math.nan


def _facts(facts: dict[str, Any]) -> str:
    if not facts:
        return ""
    items = "".join(f"<li>{k} <b>{escaped(v)}</b></li>" for k, v in facts.items())
    return f'<ul class="meta">{items}</ul>'
