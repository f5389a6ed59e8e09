"""The report's sections, in page order: each turns :class:`ReportData` into one section's HTML.

A section always appears. When the files it needs are missing it says so and names the command that writes
them, so a reader of a partial run folder knows what to run, not just that something is absent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from custseq import metrics
from custseq.config import ReportConfig, config_to_dict
from custseq.io.run_files import (
    AucBootstrap,
    AuditGroup,
    EpochRecord,
    EvaluationResult,
    ItemMixtureInfo,
    Metrics,
    TableAccount,
)
from custseq.metrics import METRICS, metric_label
from custseq.report import analysis, figures, interactive
from custseq.report.analysis import Labelled
from custseq.report.data import EVALUATE, ReportData
from custseq.report.html import Html, Section, bullets, figure, heading, key_values, number, paragraph, table
from custseq.report.html import unavailable as na
from custseq.scoring.scores import value_score_formula
from custseq.scoring.segments import SEGMENTS

log = logging.getLogger(__name__)

TITLES = {
    "summary": "Data summary",
    "backtest": "Back-test",
    "roc-pr": "ROC and precision-recall",
    "calibration": "Calibration",
    "gain-lift": "Cumulative gain and lift",
    "value-deciles": "Value by decile",
    "loss-curves": "Loss curves",
    "attention": "Attention",
    "embedding-map": "Embedding map",
    "segments": "Segments",
    "actions": "Next actions",
    "profit": "Retention campaign profit",
    "audit": "Fairness and error audit",
}
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
PERCENT = ".1%"


def build_sections(data: ReportData, cfg: ReportConfig) -> list[Section]:
    """Every section, in page order; a section whose data is malformed says so instead of failing the report."""
    sections = []
    for section_id, build in BUILDERS.items():
        try:
            body = build(data, cfg)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            log.warning("report: section %s could not be drawn: %r", section_id, error)
            body = na(f"this section could not be drawn from the run folder's files ({type(error).__name__}: {error})")
        sections.append(Section(section_id, TITLES[section_id], body))
    return sections


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
        f'<p class="sub">Run folder <code>{_escape(data.run_dir.name)}</code></p>{_facts(facts)}'
        f"{_facts(_headline(data))}"
    )


def _headline(data: ReportData) -> dict[str, str]:
    """What a reader wants first: expected churn and value, who needs retention, how good the model was."""
    out: dict[str, str] = {}
    p = data.predictions
    if p is not None and len(p):
        out["expected churn rate"] = f"{p['churn_probability'].mean():.1%}"
        out["total expected value"] = f"{p['clv_expected'].sum():,.0f}"
        if "retention_flag" in p:
            out["flagged for retention"] = f"{int(p['retention_flag'].sum()):,}"
    v = data.metrics.validation if data.metrics is not None else None
    if v is not None and not math.isnan(v.churn_auc):
        out["validation churn AUC"] = f"{v.churn_auc:.3f}"
    if v is not None and not math.isnan(v.value_gini):
        out["value nGini"] = f"{v.value_gini:.3f}"
    best = data.profit.best.get("saved_value") if data.profit is not None else None
    if best is not None:
        out["best campaign"] = f"{best.k:,} contacts, profit {best.profit:,.0f}"
    return out


def _facts(facts: dict[str, Any]) -> str:
    if not facts:
        return ""
    items = "".join(f"<li>{k} <b>{_escape(v)}</b></li>" for k, v in facts.items())
    return f'<ul class="meta">{items}</ul>'


def _escape(text: Any) -> str:
    return escape(str(text))


# --- summary -------------------------------------------------------------------------------------------------


def summary(data: ReportData, cfg: ReportConfig) -> str:
    parts = []
    m = data.metrics
    tables: dict[str, TableAccount] = {}
    if m is not None:
        parts.append(key_values(_run_facts(m)))
        tables = m.tables
    elif data.evaluation is not None:  # an evaluate folder: its data summary is in the details
        tables = data.evaluation.details.tables
    else:
        parts.append(na(data.missing("metrics.json")))
    if tables:
        parts += [heading("Rows per table"), _rows_table(tables)]
        parts += [heading("Quarantine and flags"), _rules_table(tables)]
        mapping = [{"table": t, **row.to_json()} for t, info in tables.items() for row in info.mapping]
        if mapping:
            frame = pd.DataFrame(mapping).reindex(columns=["table", "column", "source", "how"])
            parts += [heading("Column mapping"), table(frame, labels={"source": "source column"})]
        notes = [f"{t}: {n}" if not n.startswith(t) else n for t, info in tables.items() for n in info.notes]
        if notes:
            parts += [heading("Notes"), bullets(notes)]
    if data.predictions is not None:
        p = data.predictions
        facts = {"customers": len(p)}
        if "churn_probability" in p:
            facts["mean churn probability"] = float(p["churn_probability"].mean())
        if "clv_expected" in p:
            facts["total expected value"] = float(p["clv_expected"].sum())
            facts["mean expected value"] = float(p["clv_expected"].mean())
        parts += [heading("Predictions"), key_values(facts)]
    else:
        parts.append(na(data.missing("predictions.parquet")))
    return "".join(parts)


def _run_facts(m: Metrics) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "as of": m.as_of,
        "horizon (days)": m.horizon_days,
        "customers scored": m.customers_scored,
        "training windows (as-of dates)": m.training_windows,
        "pre-trained encoder": m.pretrained,
        "churn calibration": m.calibration,
    }
    if m.task_weighting is not None:
        weights = ", ".join(number(w) for w in m.task_weighting.weights)
        facts["task weighting"] = m.task_weighting.mode + (f" (churn, value: {weights})" if weights else "")
    facts["p_alive"] = m.p_alive.to_json()  # the fitted parameters, or why there are none
    facts["run time (s)"] = m.seconds
    return {k: v for k, v in facts.items() if v is not None}


def _rows_table(tables: dict[str, TableAccount]) -> str:
    frame = pd.DataFrame(
        [
            {
                "table": name,
                "rows_in": info.rows_in,
                "rows_used": info.rows_used,
                "rows_quarantined": info.rows_quarantined,
            }
            for name, info in tables.items()
        ]
    )
    frame["share_quarantined"] = frame["rows_quarantined"] / frame["rows_in"].where(frame["rows_in"] > 0)
    labels = {
        "rows_in": "rows in",
        "rows_used": "rows used",
        "rows_quarantined": "quarantined",
        "share_quarantined": "share",
    }
    return table(frame, labels=labels, formats={"share_quarantined": ".2%"})


def _rules_table(tables: dict[str, TableAccount]) -> str:
    """Rows per validation rule and table, quarantined or flagged, with the rule's reason."""
    rows = []
    for name, info in tables.items():
        quarantined, flagged = info.quarantined_by_rule, info.flagged_by_rule
        for rule in dict.fromkeys([*quarantined, *flagged]):
            q, f = quarantined.get(rule), flagged.get(rule)
            reason = (q or f).reason if (q or f) is not None else ""
            rows.append({"table": name, "rule": rule, "reason": reason, "quarantined": q.rows if q else 0,
                         "flagged": f.rows if f else 0})  # fmt: skip
    if not rows:
        return paragraph("No row was quarantined or flagged by a validation rule.")
    return table(
        pd.DataFrame(rows),
        labels={"quarantined": "rows quarantined", "flagged": "rows flagged (kept)"},
        caption="Quarantined rows are set aside (see the run's quarantine folder); flagged rows are kept.",
    )


# --- back-test -----------------------------------------------------------------------------------------------


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
    labelled = _validation(data)
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
    details = ev.details
    lead = (
        f"Protocol {ev.protocol}, test window as of {ev.as_of}, horizon {ev.horizon_days} days, "
        f"seeds {list(ev.seeds)}; {number(details.test_customers)} test customers (churn rate "
        f"{number(details.test_churn_rate)})"
    )
    parts = [paragraph(lead + ". Mean ± standard deviation over seeds; the best of each column in bold.", lead=True)]
    summary_ = ev.summary
    columns = [c for c in BACKTEST_COLUMNS if any(c in s for s in summary_.values())]
    if summary_:
        rows, bold = [], set()
        for method, s in summary_.items():
            row: dict[str, Any] = {"method": method}
            for c in columns:
                cell = s.get(c)
                if cell is None or _nan(cell.mean):
                    row[c] = "–"
                else:
                    show = METRICS[c].show
                    row[c] = f"{show(cell.mean)} ± {show(cell.std if not _nan(cell.std) else 0)}"
            rows.append(row)
        for c in columns:
            means = {i: s[c].mean for i, s in enumerate(summary_.values()) if c in s}
            means = {i: v for i, v in means.items() if not _nan(v)}
            if means:
                pick = min if c in LOWER_IS_BETTER else max
                best = pick(means.values())
                bold |= {(i, c) for i, v in means.items() if v == best}
        labels = {c: METRICS[c].label + (" ↓" if c in LOWER_IS_BETTER else " ↑") for c in columns}
        frame = pd.DataFrame(rows, columns=["method", *columns])
        parts.append(table(frame, labels=labels, bold=bold))
        parts.append(paragraph("↑ higher is better, ↓ lower is better."))
    else:
        parts.append(na("evaluation.json has no summary"))
    comparisons = ev.comparisons
    if comparisons:
        rows = []
        for method, c in comparisons.items():
            rows.append(
                {
                    "comparison": f"{c.reference} − {method}",
                    "auc": _signed(c.churn_auc_difference, c.churn_auc_p),
                    "gini": _signed(c.value_gini_difference, c.value_gini_p),
                    "bootstrap": _bootstrap(c.auc_bootstrap),
                }
            )
        labels = {
            "auc": "Δ churn AUC (t-test p)",
            "gini": "Δ value Gini (t-test p)",
            "bootstrap": "Δ AUC bootstrap 95%",
        }
        parts += [heading("Paired comparisons"), table(pd.DataFrame(rows), labels=labels)]
        parts.append(
            paragraph("Differences are the reference minus the method: positive means the reference is ahead.")
        )
    skipped = ev.skipped
    if skipped:
        parts += [heading("Methods not run"), bullets(f"{m}: {why}" for m, why in skipped.items())]
    return "".join(parts)


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


# --- labelled customers: ROC/PR, calibration, gain, deciles ---------------------------------------------------


def _validation(data: ReportData) -> Labelled | None:
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
            labelled = analysis.labelled_from_test(data.test_predictions)
            return labelled, (
                f"On the {len(labelled.churned):,} test customers of `custseq evaluate` (test_predictions.parquet)."
            )
        except KeyError as error:
            log.warning("report: test_predictions.parquet unusable: %s", error)
    labelled = _validation(data)
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


# --- the model: loss curves, attention, embedding map -----------------------------------------------------------


STAGES = {"pretrain": "pre-training", "finetune": "fine-tuning"}


def loss_curves(data: ReportData, cfg: ReportConfig) -> str:
    if data.history is None:
        return na(data.missing("history.json"))
    stages = {"pretrain": data.history.pretrain, "finetune": data.history.finetune}
    frame = pd.DataFrame([_stage_row(stage, epochs) for stage, epochs in stages.items()])
    frame = frame.astype({"last_train": float, "last_val": float, "best_val": float})
    labels = {
        "last_train": "last train loss",
        "last_val": "last validation loss",
        "best_val": "best validation loss",
        "best_epoch": "best epoch",
    }
    parts = [
        paragraph(
            "Pre-training (masked event modelling) and fine-tuning (churn and value), training against "
            "validation loss per epoch: a validation curve turning up while training falls is over-fitting."
        ),
        figure(figures.loss_curves_figure({stage: [e.to_json() for e in epochs] for stage, epochs in stages.items()})),
        table(frame, labels=labels, formats={"best_epoch": lambda e: number(e)}),
    ]
    if not stages["pretrain"]:
        parts.append(paragraph("No pre-training epochs were recorded: this run fine-tuned without pre-training."))
    return "".join(parts)


def _stage_row(stage: str, epochs: tuple[EpochRecord, ...]) -> dict[str, Any]:
    """One stage's epochs, last losses and best validation loss (with its epoch)."""
    val = [(e.val_loss, e.epoch) for e in epochs if e.val_loss is not None and not math.isnan(e.val_loss)]
    best = min(val, default=(None, None))
    last = epochs[-1] if epochs else None
    return {
        "stage": STAGES[stage],
        "epochs": len(epochs),
        "last_train": last.train_loss if last is not None else None,
        "last_val": last.val_loss if last is not None else None,
        "best_val": best[0],
        "best_epoch": best[1],
    }


def attention(data: ReportData, cfg: ReportConfig) -> str:
    if data.attention is None:
        return na(data.missing("attention.json"))
    customers = list(data.attention.customers)[: cfg.attention_customers]
    if not customers:
        why = "report.attention_customers is 0" if cfg.attention_customers == 0 else "attention.json lists no customer"
        return na(why)
    parts = [
        paragraph(
            f"What the encoder looks at: the [CLS] token's attention on each of a customer's latest "
            f"{cfg.attention_events} events (oldest left), per layer, averaged over heads. Darker is more "
            "attention; a layer's weights sum to 1 over all of the customer's events, shown or not."
        )
    ]
    for c in customers:
        events = list(c.events)[-cfg.attention_events :]
        weights = np.atleast_2d(np.asarray(c.weights, dtype=float))[:, -len(events) :] if events else None
        title = (
            f"customer {c.customer_id} · churn probability {number(c.churn_probability)}"
            f" · expected value {number(c.clv_expected)}"
        )
        if weights is None:
            parts.append(paragraph(f"{title}: no events."))
            continue
        parts.append(figure(figures.attention_figure(events, weights, title)))
    return "".join(parts)


def embedding_map(data: ReportData, cfg: ReportConfig) -> str:
    if data.embeddings is None:
        return na(data.missing("embeddings.parquet"))
    if data.predictions is None:
        return na(f"{data.missing('predictions.parquet')}; the map is coloured by the predictions")
    points = analysis.embedding_map(data.embeddings, cfg.map_customers)
    columns = [c for c in ("customer_id", "churn_probability", "clv_expected", "segment") if c in data.predictions]
    predictions = data.predictions[columns].assign(customer_id=data.predictions["customer_id"].astype(str))
    points = points.merge(predictions, on="customer_id", how="left")
    dims = data.embeddings.shape[1] - 1
    lead = (
        f"t-SNE of the {dims}-dimensional customer embeddings of {len(points):,} customers"
        + (
            f" (a stable sample, by a hash of customer_id, of {len(data.embeddings):,})"
            if len(points) < len(data.embeddings)
            else ""
        )
        + ", reduced to at most 30 dimensions by PCA first. Nearby customers have similar event sequences in the "
        "encoder's eyes; distances between far clusters mean little."
    )
    plot = interactive.embedding_map_plotly(points) if cfg.interactive else None
    caption = "Hover over a point to see the customer." if cfg.interactive else ""
    return paragraph(lead) + figure(figures.embedding_map_figure(points), caption, plot, "plot-embedding-map")


# --- what to do: segments, actions, profit -----------------------------------------------------------------------


def segments(data: ReportData, cfg: ReportConfig) -> str:
    if data.predictions is None:
        return na(data.missing("predictions.parquet"))
    if "segment" not in data.predictions:
        return na("predictions.parquet has no segment column (written by custseq 0.8 and later)")
    t = analysis.segment_summary(data.predictions)
    labels = {
        "share": "share",
        "mean_churn_probability": "mean churn",
        "mean_clv_expected": "mean expected value",
        "total_clv_expected": "total expected value",
        "mean_value_score": "mean value score",
    }
    frame = t.reindex(
        columns=[
            "segment",
            "customers",
            "share",
            "mean_churn_probability",
            "mean_clv_expected",
            "total_clv_expected",
            "mean_value_score",
        ]
    ).dropna(axis=1, how="all")
    parts = [
        paragraph(
            "Each customer gets exactly one segment: the first rule that holds, in this order: "
            + ", ".join(s.replace("_", " ") for s in SEGMENTS)
            + "."
        ),
        figure(figures.segments_figure(t), half=True),
        table(frame, labels=labels, formats={"share": PERCENT}),
        heading("Value score"),
    ]
    recorded = data.metrics.value_score if data.metrics is not None else None
    if recorded is not None:
        parts.append(f'<p class="formula">{_escape(recorded.formula)}</p>')
        parts.append(key_values(config_to_dict(recorded.parameters), caption="Parameters"))
    else:
        parts.append(f'<p class="formula">{_escape(value_score_formula())}</p>')
        parts.append(paragraph("With the default parameters: metrics.json does not record the run's own."))
    return "".join(parts)


def _mixture_text(m: ItemMixtureInfo) -> str:
    """How the next items were proposed: the head mixed with each customer's own recent items."""
    if m.note:
        return f"Next items: the next-event head alone ({m.note})."
    half_life = "no decay" if m.half_life >= 1e6 else f"half-life {number(m.half_life)} events"
    text = (
        f"Next items: the pre-trained next-event head mixed with each customer's own recent items (weight "
        f"{number(m.weight)} on their own, {half_life}), chosen on the window as of {m.fitted_on} by the "
        f"hit rate of the actual next item of {number(m.customers)} customers"
    )
    hits = m.hit_rate_at_k
    if {"head", "customer", "mixture"} <= set(hits):
        text += (
            f" (hit@{m.k}: head alone {hits['head']:.3f}, own items alone {hits['customer']:.3f}, "
            f"mixture {hits['mixture']:.3f}, in-sample)"
        )
    return text + "."


def actions(data: ReportData, cfg: ReportConfig) -> str:
    if data.predictions is None:
        return na(data.missing("predictions.parquet"))
    p = data.predictions
    parts = []
    settings = data.metrics.actions if data.metrics is not None else None
    if settings is not None:
        shown = {
            k.replace("_", " "): v
            for k, v in vars(settings).items()
            if k not in ("note", "item_mixture") and v is not None
        }
        parts.append(key_values(shown))
        if settings.note:
            parts.append(paragraph(settings.note))
        if settings.item_mixture is not None:
            parts.append(paragraph(_mixture_text(settings.item_mixture)))
    if "retention_flag" in p:
        flagged = p["retention_flag"].fillna(False).astype(bool)
        text = f"{int(flagged.sum()):,} of {len(p):,} customers ({flagged.mean():.1%}) are flagged for retention"
        if settings is not None:
            text += f" (churn probability above {number(settings.retention_threshold)})"
        parts.append(paragraph(text + "."))
        if "segment" in p:
            by_segment = flagged.groupby(p["segment"]).agg(["sum", "mean"]).reset_index()
            by_segment.columns = ["segment", "flagged", "share_flagged"]
            by_segment = by_segment[by_segment["flagged"] > 0].sort_values("flagged", ascending=False)
            if len(by_segment):
                parts.append(
                    table(
                        by_segment,
                        labels={"share_flagged": "share of segment"},
                        formats={"share_flagged": PERCENT, "flagged": "d"},
                    )
                )
    else:
        parts.append(na("predictions.parquet has no retention_flag column"))
    if "next_actions" in p:
        counts = analysis.action_counts(p)
        if len(counts):
            labels = {
                "customers": "customers (any rank)",
                "first": "as first action",
                "mean_probability": "mean probability",
            }
            parts += [
                heading("Most common next actions, by kind"),
                table(counts, labels=labels, formats={"share": PERCENT, "first": "d"}),
            ]
        else:
            parts.append(paragraph("No customer has a next action."))
    else:
        parts.append(na("predictions.parquet has no next_actions column"))
    if "next_items" in p:
        items = analysis.item_counts(p)
        if len(items):
            parts += [heading("Most common next items"), table(items, formats={"share": PERCENT})]
        else:
            parts.append(paragraph("No item recommendations: the data has no item field, or none was predicted."))
    return "".join(parts)


def profit(data: ReportData, cfg: ReportConfig) -> str:
    if data.profit is None:
        return na(data.missing("profit.json"))
    pr = data.profit
    curve = pr.curve.to_frame()
    best = {ordering: {"k": b.k, "profit": b.profit} for ordering, b in pr.best.items()}
    params = config_to_dict(pr.parameters)
    parts = [
        paragraph(
            "Expected profit of a retention campaign that contacts the top k customers, for every k, in three orders. "
            "A contact costs the contact cost; a saved would-be churner brings their value if retained and redeems "
            "the offer; non-churners may redeem it anyway."
        ),
        key_values(
            {k.replace("_", " "): v for k, v in params.items()} | {"customers": pr.customers},
            caption="Campaign parameters",
        ),
    ]
    plot = interactive.profit_plotly(curve, best) if cfg.interactive else None
    parts.append(
        figure(figures.profit_figure(curve, best), "The marker is each ordering's best k.", plot, "plot-profit")
    )
    if best:
        frame = pd.DataFrame(
            [
                {
                    "ordering": figures.ORDERING_LABELS.get(o, o),
                    "k": int(b["k"]),
                    "share": figures.share_at(curve, int(b["k"])),
                    "profit": float(b["profit"]),
                }
                for o, b in best.items()
            ]
        )
        parts.append(
            table(
                frame,
                labels={"k": "best k (customers contacted)", "share": "share contacted", "profit": "expected profit"},
                formats={"share": PERCENT},
            )
        )
    return "".join(parts)


# --- audit ----------------------------------------------------------------------------------------------------


def audit(data: ReportData, cfg: ReportConfig) -> str:
    parts = []
    a = data.audit
    if a is None:
        parts.append(na(data.missing("audit.json")))
    else:
        facts = {"labelled customers": a.labelled_customers, "flagged groups": a.flagged_groups}
        overall = vars(a.overall).items()
        facts |= {metric_label(k): v for k, v in overall if not isinstance(v, dict | list)}
        parts.append(key_values({k: v for k, v in facts.items() if v is not None}))
        settings = config_to_dict(a.settings)
        parts.append(key_values({k.replace("_", " "): v for k, v in settings.items()}, caption="Settings"))
        for attribute in a.attributes:
            parts += [heading(f"By {attribute.attribute}"), _audit_table(attribute.groups)]
    if data.review is not None:
        r = data.review
        parts += [
            heading("Customers for review"),
            paragraph(
                f"{len(r):,} customers are flagged for a human look" + ("; the first 20:" if len(r) > 20 else ":")
            ),
        ]
        labels = {c: c.replace("_", " ") for c in r.columns}
        parts.append(table(r.head(20).reset_index(drop=True), labels=labels))
    else:
        parts.append(na(data.missing("review.csv")))
    return "".join(parts)


def _audit_table(groups: tuple[AuditGroup, ...]) -> str:
    """One row per group; its top segments under its name, flagged rows highlighted with their reasons."""
    columns = {
        "group": "group (top segments)",
        "n": "customers",
        "churn_auc": "churn AUC",
        "mean_predicted_churn": "churn pred.",
        "observed_churn": "churn obs.",
        "calibration_gap": "cal. gap",
        "mean_predicted_value": "value pred.",
        "mean_actual_value": "value actual",
        "value_ratio": "value ratio",
        "flags": "flags",
    }
    numeric = [c for c in columns if c not in ("group", "flags")]
    frame = pd.DataFrame([{c: getattr(g.metrics, c) for c in numeric} for g in groups], columns=numeric).apply(
        pd.to_numeric, errors="coerce"
    )
    names = []
    for g in groups:
        shares = sorted(g.metrics.segment_shares.items(), key=lambda kv: -kv[1])[:3]
        top = ", ".join(f"{s.replace('_', ' ')} {v:.0%}" for s, v in shares)
        names.append(Html(f"{escape(g.group)}<br><small class=muted>{escape(top)}</small>"))
    frame.insert(0, "group", pd.Series(names, dtype=object))  # object: keep the Html cells as they are
    flags = [Html(f'<span class="flags">{escape("; ".join(g.flags))}</span>') for g in groups]
    frame["flags"] = pd.Series(flags, dtype=object)
    classes = ["flagged" if g.flags else "" for g in groups]
    formats = {"mean_predicted_churn": PERCENT, "observed_churn": PERCENT, "calibration_gap": "+.3f", "n": ",.0f"}
    caption = "Mean predicted (pred.) and observed (obs.) churn and value per group; flagged groups highlighted."
    return table(frame, labels=columns, formats=formats, row_classes=classes, caption=caption)


BUILDERS: dict[str, Callable[[ReportData, ReportConfig], str]] = {
    "summary": summary,
    "backtest": backtest,
    "roc-pr": roc_pr,
    "calibration": calibration,
    "gain-lift": gain_lift,
    "value-deciles": value_deciles,
    "loss-curves": loss_curves,
    "attention": attention,
    "embedding-map": embedding_map,
    "segments": segments,
    "actions": actions,
    "profit": profit,
    "audit": audit,
}
