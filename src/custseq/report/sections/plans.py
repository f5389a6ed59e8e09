"""What to do: segments and the value score, next actions, and the retention campaign's profit."""

from __future__ import annotations

import pandas as pd

from custseq.config import ReportConfig, config_to_dict
from custseq.io.run_files import ActionSettings, ItemMixtureInfo, ProfitBest, ValueScore
from custseq.report import analysis, figures, interactive
from custseq.report.data import ReportData
from custseq.report.html import PERCENT, escaped, figure, heading, key_values, number, paragraph, table
from custseq.report.html import unavailable as na
from custseq.scoring.scores import value_score_formula
from custseq.scoring.segments import SEGMENTS

SEGMENT_COLUMNS = {
    "segment": "segment",
    "customers": "customers",
    "share": "share",
    "mean_churn_probability": "mean churn",
    "mean_clv_expected": "mean expected value",
    "total_clv_expected": "total expected value",
    "mean_value_score": "mean value score",
}  # column of analysis.segment_summary -> its header


def segments(data: ReportData, cfg: ReportConfig) -> str:
    if data.predictions is None:
        return na(data.missing("predictions.parquet"))
    if "segment" not in data.predictions:
        return na("predictions.parquet has no segment column (written by custseq 0.8 and later)")
    t = analysis.segment_summary(data.predictions)
    frame = t.reindex(columns=list(SEGMENT_COLUMNS)).dropna(axis=1, how="all")
    order = ", ".join(s.replace("_", " ") for s in SEGMENTS)
    return "".join(
        [
            paragraph(f"Each customer gets exactly one segment: the first rule that holds, in this order: {order}."),
            figure(figures.segments_figure(t), half=True),
            table(frame, labels=SEGMENT_COLUMNS, formats={"share": PERCENT}),
            heading("Value score"),
            _value_score(data.metrics.value_score if data.metrics is not None else None),
        ]
    )


def _value_score(recorded: ValueScore | None) -> str:
    """The value score's formula and parameters as the run recorded them, else the defaults."""
    if recorded is None:
        return f'<p class="formula">{escaped(value_score_formula())}</p>' + paragraph(
            "With the default parameters: metrics.json does not record the run's own."
        )
    formula = f'<p class="formula">{escaped(recorded.formula)}</p>'
    spread = ""
    if recorded.modal_share is not None and recorded.rank_correlation_with_value is not None:
        spread = paragraph(
            f"The score ranks customers: the commonest score (to 2 decimals) is shared by "
            f"{recorded.modal_share:.1%} of them, and its rank correlation with expected value is "
            f"{recorded.rank_correlation_with_value:.2f} (Spearman)."
        )
    return formula + spread + key_values(config_to_dict(recorded.parameters), caption="Parameters")


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
    settings = data.metrics.actions if data.metrics is not None else None
    parts = [_plan_settings(settings)] if settings is not None else []
    if "retention_flag" in p:
        parts.append(_retention(p, settings))
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
            level = settings.item_level if settings is not None else None
            title = "Most common next categories" if level and level.level == "category" else "Most common next items"
            parts += [heading(title), table(items, formats={"share": PERCENT})]
        else:
            parts.append(paragraph("No item recommendations: the data has no item field, or none was predicted."))
    return "".join(parts)


def _plan_settings(settings: ActionSettings) -> str:
    """The plans' settings, then how the next items were proposed."""
    told = ("note", "item_mixture", "item_level")  # in sentences below
    shown = {k.replace("_", " "): v for k, v in vars(settings).items() if k not in told}
    parts = [key_values({k: v for k, v in shown.items() if v is not None})]
    if settings.note:
        parts.append(paragraph(settings.note))
    if settings.item_mixture is not None:
        parts.append(paragraph(_mixture_text(settings.item_mixture)))
    if settings.item_level is not None:
        parts.append(paragraph(settings.item_level.reason))
    return "".join(parts)


def _retention(p: pd.DataFrame, settings: ActionSettings | None) -> str:
    """How many customers are flagged for retention, and in which segments."""
    flagged = p["retention_flag"].fillna(False).astype(bool)
    text = f"{int(flagged.sum()):,} of {len(p):,} customers ({flagged.mean():.1%}) are flagged for retention"
    if settings is not None:
        text += f" (churn probability above {number(settings.retention_threshold)})"
    parts = [paragraph(text + ".")]
    if "segment" in p:
        by_segment = flagged.groupby(p["segment"]).agg(["sum", "mean"]).reset_index()
        by_segment.columns = ["segment", "flagged", "share_flagged"]
        by_segment = by_segment[by_segment["flagged"] > 0].sort_values("flagged", ascending=False)
        if len(by_segment):
            labels, formats = {"share_flagged": "share of segment"}, {"share_flagged": PERCENT, "flagged": "d"}
            parts.append(table(by_segment, labels=labels, formats=formats))
    return "".join(parts)


def profit(data: ReportData, cfg: ReportConfig) -> str:
    if data.profit is None:
        return na(data.missing("profit.json"))
    pr = data.profit
    curve = pr.curve.to_frame()
    best = {ordering: {"k": b.k, "profit": b.profit} for ordering, b in pr.best.items()}
    params = {k.replace("_", " "): v for k, v in config_to_dict(pr.parameters).items()}
    plot = interactive.profit_plotly(curve, best) if cfg.interactive else None
    parts = [
        paragraph(
            "Expected profit of a retention campaign that contacts the top k customers, for every k, in three orders. "
            "A contact costs the contact cost; a saved would-be churner brings their value if retained and redeems "
            "the offer; non-churners may redeem it anyway."
        ),
        key_values(params | {"customers": pr.customers}, caption="Campaign parameters"),
        figure(figures.profit_figure(curve, best), "The marker is each ordering's best k.", plot, "plot-profit"),
    ]
    if pr.best:
        parts.append(_best_table(pr.best, curve))
    if pr.contacts_by_save_rate:
        rows = [{"save rate": rate, "customers": b.k, "gain": b.profit} for rate, b in pr.contacts_by_save_rate.items()]
        parts += [
            heading("If the offer kept half or twice as many"),
            paragraph(
                f"The save rate is the least certain assumption ({pr.parameters.save_rate:g} assumed): the contact "
                "list (contacts.csv: at risk, and worth more than the costs) at other save rates."
            ),
            table(pd.DataFrame(rows), labels={"gain": "expected gain", "customers": "customers to contact"}),
        ]
    return "".join(parts)


def _best_table(best: dict[str, ProfitBest], curve: pd.DataFrame) -> str:
    """Each ordering's best number of contacts, its share of the customers and its profit."""
    frame = pd.DataFrame(
        [
            {"ordering": figures.ORDERING_LABELS.get(o, o), "k": b.k, "share": figures.share_at(curve, b.k),
             "profit": b.profit}
            for o, b in best.items()
        ]
    )  # fmt: skip
    labels = {"k": "best k (customers contacted)", "share": "share contacted", "profit": "expected profit"}
    return table(frame, labels=labels, formats={"share": PERCENT})
