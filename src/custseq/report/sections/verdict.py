"""The report's first screen, in words and numbers: who is likely to leave, what is at stake, whom to contact
first, and how much to trust it — with churn and value defined, and whether custseq beat the simple baselines.

Everything comes from the run's own files: predictions.parquet, contacts.csv, metrics.json (the predictor's
validation figures, where BG/NBD + Gamma-Gamma is scored on the same held-out customers) and, when the folder
also holds an evaluate run, evaluation.json's back-test.
"""

from __future__ import annotations

import math

import pandas as pd

from custseq.config import ReportConfig
from custseq.io.run_files import EvaluationResult, Metrics, ModelChoice, Profit
from custseq.report.data import ReportData
from custseq.report.html import heading, paragraph, table
from custseq.report.html import unavailable as na
from custseq.scoring.profit import money
from custseq.scoring.prospects import prospects_text

TOP_CONTACTS = 5
BASELINES = ("btyd", "pareto-nbd", "logistic", "lightgbm", "lightgbm-rich", "last-period", "xgboost", "random-forest",
          "lightgbm-mae", "lightgbm-p50", "lightgbm-p90")  # fmt: skip  # evaluate's per-customer baselines


def verdict(data: ReportData, cfg: ReportConfig) -> str:
    if data.evaluation is not None and data.predictions is None:
        return paragraph(back_test_verdict(data.evaluation), lead=True)
    if data.predictions is None:
        return na(data.missing("predictions.parquet"))
    m = data.metrics
    currency = data.profit.parameters.currency if data.profit is not None else None
    parts = [paragraph(_who_leaves(data.predictions, m, currency), lead=True)]
    if data.contacts is not None:
        parts.append(paragraph(_at_stake(data.contacts, data.profit, currency)))
        if len(data.contacts):
            parts += [heading("Contact first"), _first_contacts(data.contacts)]
    else:
        parts.append(na(data.missing("contacts.csv")))
    trust = _trust(m.model_choice) if m is not None and m.model_choice is not None else None
    if m is not None and m.btyd_alone is not None:
        trust = f"These are not custseq's learned predictions: {m.btyd_alone}."
    if data.evaluation is not None:
        trust = back_test_verdict(data.evaluation)
    if trust:
        parts += [heading("How much to trust this"), paragraph(trust)]
    if m is not None:
        parts.append(paragraph(_definitions(m, currency), lead=False))
    return "".join(parts)


def _who_leaves(p: pd.DataFrame, m: Metrics | None, currency: str | None) -> str:
    horizon = f"the next {m.horizon_days} days" if m is not None else "the horizon"
    churn = p["churn_probability"].astype(float)
    likely = int((churn > 0.5).sum())
    text = (
        f"Of {len(p):,} customers, {likely:,} ({likely / max(len(p), 1):.0%}) are more likely than not to leave "
        f"in {horizon}; the expected churn rate is {churn.mean():.1%}. Together they are expected to spend "
        f"{money(p['clv_expected'].sum(), currency)}"
    )
    if "lapsed_regular" in p and (lapsed := int(p["lapsed_regular"].sum())):
        text += f"; {lapsed:,} regulars have gone silent for several of their usual gaps"
    text += "."
    if m is not None and m.prospects is not None:
        text += " " + prospects_text(m.prospects, currency)
    return text


def _at_stake(contacts: pd.DataFrame, profit: Profit | None, currency: str | None) -> str:
    if contacts.empty:
        return "No customer is worth a retention contact under the profit settings (see Retention campaign profit)."
    text = (
        f"{len(contacts):,} {'customer is' if len(contacts) == 1 else 'customers are'} worth a retention contact "
        "(contacts.csv): at risk, and worth more than "
        f"the contact costs. {money(contacts['value_at_stake'].sum(), currency)} is at stake with them (what they "
        "would spend if they stayed, times the chance they leave), and contacting them is expected to gain "
        f"{money(contacts['expected_gain'].sum(), currency)} after costs"
    )
    if profit is not None:
        p = profit.parameters
        text += (
            f" (assumptions: contact cost {p.contact_cost:g}, offer cost {p.offer_cost:g}, {p.save_rate:.0%} of "
            "contacted would-be leavers kept; set them in [profit])"
        )
        if profit.contacts_by_save_rate:
            band = "; ".join(
                f"if {float(rate):.0%} were kept: {b.k:,} customers, gain {b.profit:,.0f}"
                for rate, b in profit.contacts_by_save_rate.items()
            )
            text += f". The save rate is the least certain assumption — {band}"
    return text + "."


def _first_contacts(contacts: pd.DataFrame) -> str:
    top = contacts.head(TOP_CONTACTS)[["customer_id", "value_at_stake", "reason", "action"]]
    labels = {"customer_id": "customer", "value_at_stake": "at stake", "reason": "why", "action": "first action"}
    return table(top, labels=labels, formats={"value_at_stake": ",.0f"})


def _trust(choice: ModelChoice) -> str:
    """custseq's final predictions against BG/NBD + Gamma-Gamma on the held-out validation customers."""
    btyd = choice.candidates.get("btyd")
    text = (
        f"On {choice.validation_customers:,} customers held out of training, custseq ranks who leaves with an "
        f"AUC of {choice.churn_auc:.3f} and who spends with a normalised Gini of {choice.value_gini:.3f}"
    )
    if btyd is not None and btyd.churn_auc is not None and btyd.value_gini is not None:
        d_auc, d_gini = choice.churn_auc - btyd.churn_auc, choice.value_gini - btyd.value_gini
        better = d_auc > 0 and d_gini > 0
        text += (
            f", against {btyd.churn_auc:.3f} and {btyd.value_gini:.3f} for the classic BG/NBD + Gamma-Gamma model "
            f"on the same customers: custseq is {'ahead' if better else 'not ahead'} on "
            f"{'both' if better else 'both' if d_auc <= 0 and d_gini <= 0 else 'one'} "
            f"({d_auc:+.3f} AUC, {d_gini:+.3f} nGini)"
        )
    text += (
        ". AUC 0.5 is a coin toss and 1 a perfect ranking; nGini 0 ranks spend no better than chance. "
        "Run `custseq evaluate` for a back-test against every baseline."
    )
    return text


def back_test_verdict(ev: EvaluationResult) -> str:
    """The back-test's verdict as plain text: custseq against the best baseline on each headline metric, with the
    paired test (the report's first screen, and the CLI under evaluate's table)."""
    summary = ev.summary
    if "custseq" not in summary:
        why = f": {ev.skipped['custseq']}" if "custseq" in ev.skipped else ""
        return f"custseq did not run in this back-test{why}."
    sentences = []
    for metric, label, higher in (("churn_auc", "churn AUC", True), ("value_gini", "value nGini", True),
                                  ("churn_brier", "Brier score", False)):  # fmt: skip
        ours = _mean(summary["custseq"], metric)
        others = {m: _mean(s, metric) for m, s in summary.items() if m in BASELINES}
        others = {m: v for m, v in others.items() if not math.isnan(v)}
        if math.isnan(ours) or not others:
            continue
        best = (max if higher else min)(others, key=lambda m: others[m])
        ahead = ours > others[best] if higher else ours < others[best]
        sentences.append(
            f"{label}: custseq {ours:.3f} against {others[best]:.3f} for {best}, the best baseline "
            f"({'custseq ahead' if ahead else f'{best} ahead'}{_p_value(ev, best, metric)})"
        )
    if not sentences:
        return "The back-test has no metric to compare custseq on."
    seeds = f"{len(ev.seeds)} seed{'s' if len(ev.seeds) != 1 else ''}"
    return f"In the back-test (test window as of {ev.as_of}, {ev.horizon_days} days, {seeds}): {'; '.join(sentences)}."


def _p_value(ev: EvaluationResult, method: str, metric: str) -> str:
    """The paired test of custseq against ``method`` on ``metric``: the t-test over seeds, or with one seed the
    per-customer bootstrap (AUC only)."""
    c = ev.comparisons.get(method)
    if c is None:
        return ""
    if len(ev.seeds) > 1:
        p = {"churn_auc": c.churn_auc_p, "value_gini": c.value_gini_p}.get(metric, math.nan)
        return f", paired t-test over seeds p = {p:.2g}" if math.isfinite(p) else ""
    return f", paired bootstrap p = {c.auc_bootstrap.p_value:.2g}" if metric == "churn_auc" else ""


def _mean(cells: dict, metric: str) -> float:
    cell = cells.get(metric)
    return float(cell.mean) if cell is not None and cell.mean is not None else math.nan


def _definitions(m: Metrics, currency: str | None) -> str:
    units = f"in {currency}" if currency else "in the data's own currency units (name them with [profit] currency)"
    return (
        f"Definitions: a customer churns when they make no purchase in the {m.horizon_days} days after "
        f"{m.as_of}; value is what they spend in those days, {units}. Expected value counts the chance of "
        "churning (a likely leaver's expected value is small)."
    )
