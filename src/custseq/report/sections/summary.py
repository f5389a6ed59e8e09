"""Data summary: the run's facts, rows per table, quarantine and flags, the column mapping, the predictions."""

from __future__ import annotations

from typing import Any

import pandas as pd

from custseq.config import ReportConfig
from custseq.io.run_files import Metrics, TableAccount
from custseq.report.data import ReportData
from custseq.report.html import bullets, heading, key_values, number, paragraph, table
from custseq.report.html import unavailable as na


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
        facts: dict[str, Any] = {"customers": len(p)}
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
            entry = q or f
            reason = entry.reason if entry is not None else ""
            rows.append({"table": name, "rule": rule, "reason": reason, "quarantined": q.rows if q else 0,
                         "flagged": f.rows if f else 0})  # fmt: skip
    if not rows:
        return paragraph("No row was quarantined or flagged by a validation rule.")
    return table(
        pd.DataFrame(rows),
        labels={"quarantined": "rows quarantined", "flagged": "rows flagged (kept)"},
        caption="Quarantined rows are set aside (see the run's quarantine folder); flagged rows are kept.",
    )
