"""Fairness and error audit: metrics per group of each audited attribute, and the customers for review."""

from __future__ import annotations

from html import escape

import pandas as pd

from custseq.config import ReportConfig, config_to_dict
from custseq.io.run_files import Audit, AuditGroup, BeforeAfter, ReviewOutcomes
from custseq.metrics import metric_label
from custseq.report.data import ReportData
from custseq.report.html import PERCENT, Html, heading, key_values, paragraph, table
from custseq.report.html import unavailable as na
from custseq.scoring.decisions import DECISION_COLUMNS


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
        parts.append(_corrections(a))
    if data.review is not None:
        r = data.review
        parts += [
            heading("Customers for review"),
            paragraph(
                f"{len(r):,} customers are flagged for a human look" + ("; the first 20:" if len(r) > 20 else ":")
            ),
        ]
        shown = r.drop(columns=[c for c in DECISION_COLUMNS if c in r and r[c].isna().all()])
        labels = {c: c.replace("_", " ") for c in shown.columns}
        parts.append(table(shown.head(20).reset_index(drop=True), labels=labels))
        decided = data.metrics.review_decisions if data.metrics is not None else None
        parts.append(
            paragraph(
                "Reviewers' decisions applied: " + ", ".join(f"{n:,} {k}" for k, n in decided.items()) + "."
                if decided
                else "To act on this list, fill in its decision column (custseq, btyd or override with "
                "override_churn_probability / override_clv_expected) and run `custseq plan FOLDER --decisions "
                "review.csv`."
            )
        )
    else:
        parts.append(na(data.missing("review.csv")))
    if data.metrics is not None and data.metrics.review_outcomes is not None:
        parts.append(_review_outcomes(data.metrics.review_outcomes))
    return "".join(parts)


def _review_outcomes(r: ReviewOutcomes) -> str:
    """Earlier reviewers' decisions against what happened: each source's errors, and whom to trust."""
    names = {"custseq": "custseq", "btyd": "BG/NBD + Gamma-Gamma", "reviewers": "reviewers' decisions"}
    frame = pd.DataFrame(
        [{"source": names.get(k, k), "churn_brier": e.churn_brier, "value_mae": e.value_mae}
         for k, e in r.errors.items()]
    )  # fmt: skip
    frame[["churn_brier", "value_mae"]] = frame[["churn_brier", "value_mae"]].apply(pd.to_numeric, errors="coerce")
    kinds = ", ".join(f"{n:,} {k}" for k, n in r.by_decision.items())
    caption = (
        f"{r.decisions:,} past decisions: {r.measured:,} with outcomes ({kinds}), {r.pending:,} pending (horizon "
        f"not over), {r.before_data:,} before the data. Closer churn where the reviewers changed custseq's: "
        f"reviewers {r.reviewers_closer:,}, custseq {r.custseq_closer:,} of {r.overruled:,}. "
        f"Outcomes are {r.calibration}."
    )
    labels = {"churn_brier": "churn Brier", "value_mae": "value MAE"}
    return (
        heading("Past decisions against outcomes")
        + table(frame, labels=labels, formats={"churn_brier": ".3f", "value_mae": ",.2f"}, caption=caption)
        + paragraph(r.recommendation)
    )


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


RECALIBRATION_OFF = (
    "Flagged groups are not corrected: group recalibration is off by default; `[audit] recalibrate_groups = true` "
    "corrects the churn and value of groups flagged for their calibration gap or value ratio on these customers."
)


def _corrections(a: Audit) -> str:
    """The group corrections' before/after table, or a sentence saying why there are none."""
    r = a.recalibration
    if not a.settings.recalibrate_groups:
        return heading("Group corrections") + paragraph(RECALIBRATION_OFF)
    if r is None:
        return heading("Group corrections") + na("audit.json records no group corrections")
    if not r.groups:
        return heading("Group corrections") + paragraph(
            "No group is flagged for its calibration gap or value ratio: nothing was corrected."
        )
    rows = [
        {"group": f"{g.attribute}: {g.group}", "n": g.n, "churn_shift": g.churn_shift,
         **_pair("gap", g.calibration_gap), "value_factor": g.value_factor, **_pair("ratio", g.value_ratio_error)}
        for g in r.groups
    ]  # fmt: skip
    rows.append({"group": "all validation customers", "n": a.labelled_customers, "churn_shift": None,
                 **_pair("gap", r.overall_calibration_gap), "value_factor": None,
                 **_pair("ratio", r.overall_value_ratio_error)})  # fmt: skip
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c != "group"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    labels = {"n": "customers", "churn_shift": "churn logit shift", "gap_before": "|cal. gap| before",
              "gap_after": "|cal. gap| after", "value_factor": "value factor",
              "ratio_before": "|value ratio − 1| before", "ratio_after": "|value ratio − 1| after"}  # fmt: skip
    formats = {"n": ",.0f", "churn_shift": "+.3f", "gap_before": ".3f", "gap_after": ".3f", "value_factor": ".3f",
               "ratio_before": ".3f", "ratio_after": ".3f"}  # fmt: skip
    auc = r.overall_churn_auc
    caption = (
        f"Churn and value corrections of the flagged groups, applied to every customer of the group by predict "
        f"and score (– = not corrected). Before and after are {r.measured}. Overall churn AUC "
        f"{_number(auc.before)} before, {_number(auc.after)} after. The tables above and the validation curves "
        "show the predictions before correction."
    )
    return heading("Group corrections") + table(frame, labels=labels, formats=formats, caption=caption)


def _pair(name: str, values: BeforeAfter) -> dict[str, float | None]:
    return {f"{name}_before": values.before, f"{name}_after": values.after}


def _number(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
