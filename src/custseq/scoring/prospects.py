"""How the prospects (events, no purchase yet) are told in words, in the CLI and the report."""

from __future__ import annotations

from custseq.io.run_files import ProspectSummary
from custseq.scoring.profit import money


def prospects_text(s: ProspectSummary, currency: str | None = None) -> str:
    """One sentence on the prospects for the CLI and the report."""
    text = f"{s.prospects:,} people have behaviour events but no purchase yet (prospects, not counted above)"
    if not s.scored:
        return text + (f": not scored, {s.not_scored_because}." if s.not_scored_because else ".")
    text += (
        f"; {s.expected_first_purchases or 0:,.0f} of them are expected to buy for the first time, spending "
        f"{money(s.expected_value or 0.0, currency)} (prospects.csv, likeliest first"
    )
    v = s.validation
    if v is not None and v.churn_auc is not None:
        text += f"; on validation prospects AUC {v.churn_auc:.2f}"
        text += f" against {v.recency_auc:.2f} by the last event's recency" if v.recency_auc is not None else ""
    return text + ")."
