"""The report's sections, in page order: each turns :class:`ReportData` into one section's HTML.

A section always appears. When the files it needs are missing it says so and names the command that writes
them, so a reader of a partial run folder knows what to run, not just that something is absent. The sections
live in one module per group: :mod:`.summary`, :mod:`.backtest`, :mod:`.labelled` (ROC/PR, calibration, gain,
deciles), :mod:`.verdict` (the first screen: who leaves, what is at stake, whom to contact, how much to
trust it), :mod:`.model` (loss curves, attention, embedding map), :mod:`.plans` (segments, actions, profit) and
:mod:`.audit`; :mod:`.header` draws the page header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from custseq.config import ReportConfig
from custseq.report.data import ReportData
from custseq.report.html import Section
from custseq.report.html import unavailable as na
from custseq.report.sections.audit import audit
from custseq.report.sections.backtest import backtest
from custseq.report.sections.choice import model_choice
from custseq.report.sections.header import header
from custseq.report.sections.labelled import calibration, gain_lift, roc_pr, value_deciles
from custseq.report.sections.model import attention, embedding_map, loss_curves
from custseq.report.sections.plans import actions, profit, segments
from custseq.report.sections.summary import summary
from custseq.report.sections.verdict import verdict

__all__ = ["BUILDERS", "TITLES", "build_sections", "header"]

log = logging.getLogger(__name__)

TITLES = {
    "verdict": "In short",
    "segments": "Segments",
    "actions": "Next actions",
    "profit": "Retention campaign profit",
    "backtest": "Back-test",
    "model-choice": "How this prediction was made",
    "roc-pr": "ROC and precision-recall",
    "calibration": "Calibration",
    "gain-lift": "Cumulative gain and lift",
    "value-deciles": "Value by decile",
    "audit": "Fairness and error audit",
    "summary": "Appendix: data and run details",
    "loss-curves": "Appendix: loss curves",
    "attention": "Appendix: attention",
    "embedding-map": "Appendix: embedding map",
}  # page order: the decisions first, then how far to trust them, then the internals in an appendix

BUILDERS: dict[str, Callable[[ReportData, ReportConfig], str]] = {
    "verdict": verdict,
    "segments": segments,
    "actions": actions,
    "profit": profit,
    "backtest": backtest,
    "model-choice": model_choice,
    "roc-pr": roc_pr,
    "calibration": calibration,
    "gain-lift": gain_lift,
    "value-deciles": value_deciles,
    "audit": audit,
    "summary": summary,
    "loss-curves": loss_curves,
    "attention": attention,
    "embedding-map": embedding_map,
}


def build_sections(data: ReportData, cfg: ReportConfig) -> list[Section]:
    """Every section, in page order; a section whose data is malformed says so instead of failing the report.

    An evaluate folder (a back-test, no predictions) puts the back-test right after the verdict, ahead of the
    decision sections it has no data for.
    """
    sections = []
    order = list(BUILDERS)
    if data.predictions is None and data.evaluation is not None:
        order.remove("backtest")
        order.insert(1, "backtest")
    for section_id in order:
        build = BUILDERS[section_id]
        try:
            body = build(data, cfg)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            log.warning("report: section %s could not be drawn: %r", section_id, error)
            body = na(f"this section could not be drawn from the run folder's files ({type(error).__name__}: {error})")
        sections.append(Section(section_id, TITLES[section_id], body))
    return sections
