"""The HTML report of a run: one self-contained file, readable offline and without JavaScript.

``write_report(run_dir)`` reads what ``custseq predict`` and ``custseq evaluate`` wrote into ``run_dir``
(:mod:`custseq.report.data`), computes the numbers to show (:mod:`~custseq.report.analysis`), draws static
figures (:mod:`~custseq.report.figures`) and, when ``ReportConfig.interactive``, Plotly twins of the figures
that gain from hovering (:mod:`~custseq.report.interactive`), and assembles the page
(:mod:`~custseq.report.sections`, :mod:`~custseq.report.html`). Every section of :data:`SECTIONS` is always
on the page, with a "not available" note naming the command to run when its files are missing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from custseq.config import ReportConfig
from custseq.report.data import ReportData, read_run
from custseq.report.html import page
from custseq.report.sections import BUILDERS, TITLES, build_sections, header
from custseq.version import __version__

__all__ = ["SECTIONS", "TITLES", "ReportData", "read_run", "render_report", "write_report"]

SECTIONS = tuple(BUILDERS)  # the sections' ids (their HTML anchors), in page order
log = logging.getLogger(__name__)


def render_report(data: ReportData, cfg: ReportConfig | None = None) -> str:
    """The report's HTML for the contents of a run folder.

    Parameters
    ----------
    data : ReportData
        From :func:`read_run`.
    cfg : ReportConfig, optional
        Map size, attention samples, and whether to inline Plotly; defaults to ``ReportConfig()``.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    cfg = cfg or ReportConfig()
    sections = build_sections(data, cfg)
    plotly_js = None
    if cfg.interactive and any("Plotly.newPlot" in s.body for s in sections):
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    as_of = data.metrics.as_of if data.metrics is not None else None
    title = f"custseq report{f' as of {as_of}' if as_of else ''}"
    return page(title, header(data), sections, plotly_js, footer=f"Written by custseq {__version__}.")


def write_report(run_dir: Path | str, out: Path | str | None = None, cfg: ReportConfig | None = None) -> Path:
    """Write the HTML report of a run folder.

    Parameters
    ----------
    run_dir : path
        The folder written by ``custseq predict`` (and, optionally, ``custseq evaluate``); any of its files
        may be missing.
    out : path, optional
        Where to write the report; defaults to ``run_dir / "report.html"``.
    cfg : ReportConfig, optional
        Defaults to ``ReportConfig()``.

    Returns
    -------
    pathlib.Path
        The report's path.

    Raises
    ------
    DataReadError
        If ``run_dir`` is not a folder.
    """
    data = read_run(run_dir)
    out = Path(out) if out is not None else data.run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(data, cfg)
    partial = out.with_name(f".{out.name}.tmp-{os.getpid()}")  # whole or absent: a kill never leaves half a page
    try:
        partial.write_text(html, encoding="utf-8")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    log.info("report: wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
