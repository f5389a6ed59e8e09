"""The report's HTML: figures rendered inline, tables, notes, and the page around the sections.

The page is one self-contained file: CSS inline, figures as inline SVG (matplotlib's SVG backend, text kept as
text in the system font), and, when interactive, Plotly's JavaScript once in the head with each interactive
figure's static SVG inside ``<noscript>``. Nothing is fetched when the page is opened.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, cast

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from custseq.report.figures import STYLE

if TYPE_CHECKING:
    from custseq.report.figures import RcSettings

PERCENT = ".1%"  # the format of shares in the report's tables


class Html(str):
    """Text that is already HTML: tables and cells insert it as it is instead of escaping it."""


@dataclass(frozen=True)
class Section:
    """One section of the page: its stable id (the anchor), its heading and its HTML body."""

    id: str
    title: str
    body: str


CSS = """
:root { --ink: #1d2733; --muted: #5b6775; --line: #dde3ea; --accent: #1f5fa8; --bg: #f5f7fa; --card: #ffffff;
        --flag: #fff3e0; --flag-line: #f0a04b; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.5; font-size: 15px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background: #16324f; color: #fff; padding: 28px 0 20px; }
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header.top h1 { margin: 0 0 6px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header.top .meta { display: flex; flex-wrap: wrap; gap: 8px 10px; margin: 12px 0 0; padding: 0; list-style: none; }
header.top .meta li { background: rgba(255,255,255,0.12); border-radius: 6px; padding: 4px 10px; font-size: 14px; }
header.top .meta b { font-weight: 650; }
header.top .sub { color: #c9d6e3; font-size: 14px; margin: 0; }
nav.toc { background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 10; }
nav.toc ol { display: flex; flex-wrap: wrap; gap: 4px 4px; list-style: none; margin: 0; padding: 10px 0; }
nav.toc a { display: block; padding: 3px 10px; border-radius: 14px; color: var(--accent); text-decoration: none;
            font-size: 13.5px; }
nav.toc a:hover { background: #e8f0fa; }
main { padding: 8px 0 40px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; margin: 22px 0;
               padding: 18px 24px 22px; scroll-margin-top: 60px; }
section.card > h2 { margin: 0 0 10px; font-size: 20px; font-weight: 650; }
h3 { font-size: 15.5px; margin: 20px 0 8px; }
p { margin: 8px 0; }
p.lead { color: var(--muted); }
p.na { color: #7a4b00; background: var(--flag); border-left: 3px solid var(--flag-line); padding: 8px 12px;
       border-radius: 4px; }
code, .formula { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
                 font-size: 13px; }
.formula { background: #f1f4f8; border-radius: 6px; padding: 10px 12px; white-space: pre-wrap; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f1f4f8; font-weight: 600; min-width: 4em; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
tbody tr:hover { background: #f7f9fc; }
tr.flagged td { background: var(--flag); }
tr.flagged td:first-child { box-shadow: inset 3px 0 0 var(--flag-line); }
caption { caption-side: top; text-align: left; color: var(--muted); padding: 0 0 4px; font-size: 13px; }
figure { margin: 10px 0 14px; }
figure svg { width: 100%; height: auto; max-width: 100%; display: block; }
figure.half svg { max-width: 720px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 0 24px; }
.no-js .interactive { display: none; }
.interactive { min-height: 300px; }
small.muted { color: var(--muted); }
.flags { display: inline-block; min-width: 14em; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; padding: 0 0 30px; }
table.attention .track { display: inline-block; width: 12em; max-width: 40vw; vertical-align: middle;
                         margin-right: 6px; }
table.attention .bar { display: block; height: 0.8em; background: var(--accent); border-radius: 2px; }
table.attention .bar-value { color: var(--muted); font-size: 12px; }
@media (max-width: 640px) {
  .wrap { padding: 0 12px; }
  header.top { padding: 16px 0 12px; }
  header.top h1 { font-size: 20px; }
  header.top .meta li { font-size: 13px; padding: 2px 8px; }
  nav.toc { position: static; }  /* a sticky table of contents would cover half of a phone's screen */
  nav.toc ol { flex-wrap: nowrap; overflow-x: auto; }
  nav.toc a { white-space: nowrap; }
  section.card { padding: 12px 12px 14px; }
  table { display: block; max-width: 100%; overflow-x: auto; }  /* wide tables scroll inside, not the page */
  .grid { grid-template-columns: 1fr; }
}
"""


def svg(fig: Figure, dpi: int = 110) -> str:
    """A matplotlib figure as inline SVG markup (no XML prolog), text kept as text.

    Parameters
    ----------
    fig : Figure
        The figure; rasterized artists are embedded as PNG at ``dpi``.
    dpi : int
        Resolution of rasterized parts.

    Returns
    -------
    str
        An ``<svg>`` element that scales to its container's width.
    """
    buffer = io.StringIO()
    settings: RcSettings = {"svg.fonttype": "none", "svg.hashsalt": "custseq-report", "svg.image_inline": True}
    settings["font.sans-serif"] = STYLE["font.sans-serif"]  # the font names the SVG asks the browser for
    with mpl.rc_context(settings):
        fig.savefig(buffer, format="svg", dpi=dpi, metadata={"Date": None, "Creator": None})
    markup = buffer.getvalue()
    markup = markup[markup.index("<svg") :]  # drop the XML prolog and DOCTYPE
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 role="img"', markup, count=1)


def plotly_div(fig: Any, div_id: str) -> str:
    """A Plotly figure as a ``<div>`` and the script that draws it (Plotly's JavaScript is in the page head)."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_width="100%",
        default_height=f"{int(fig.layout.height or 450)}px",
        config={"displaylogo": False, "responsive": True},
    )


def figure(static: Figure, caption: str = "", interactive: Any = None, div_id: str = "", half: bool = False) -> str:
    """A figure block: the interactive version with the static SVG in ``<noscript>``, or the SVG alone."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    cls = ' class="half"' if half else ""
    if interactive is None:
        return f"<figure{cls}>{svg(static)}{caption_html}</figure>"
    return (
        f'<figure{cls}><div class="interactive">{plotly_div(interactive, div_id)}</div>'
        f"<noscript>{svg(static)}</noscript>{caption_html}</figure>"
    )


def escaped(value: Any) -> str:
    """Any value as escaped text."""
    return escape(str(value))


def prose(text: str) -> str:
    """Escaped text with `backticked` spans as ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def unavailable(why: str) -> str:
    """The note a section shows when its data is not in the run folder."""
    return f'<p class="na">Not available: {prose(why)}.</p>'


def paragraph(text: str, lead: bool = False) -> str:
    return f"<p{' class=lead' if lead else ''}>{prose(text)}</p>"


def heading(text: str) -> str:
    return f"<h3>{escape(text)}</h3>"


def bullets(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{prose(i)}</li>" for i in items) + "</ul>"


def number(x: Any, fmt: str | None = None) -> str:
    """A cell's text: integers with thousands separators, floats to 3 decimals, "–" for missing."""
    if x is None or (isinstance(x, float | np.floating) and math.isnan(x)):
        return "–"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if fmt:
        return format(x, fmt)
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        if x == 0:
            return "0"  # also -0.0
        magnitude = cast("float | np.floating[Any]", abs(x))  # mypy joins abs() of float | np.floating to object
        return f"{x:,.0f}" if magnitude >= 1e5 else f"{x:,.3f}" if magnitude >= 1e-3 else f"{x:.2e}"
    return str(x)


Format = str | Callable[[Any], str]


def table(
    frame: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    formats: Mapping[str, Format] | None = None,
    row_classes: Sequence[str] | None = None,
    bold: set[tuple[int, str]] | None = None,
    caption: str = "",
    header: bool = True,
) -> str:
    """An HTML table of ``frame``'s columns, numbers right-aligned.

    Parameters
    ----------
    frame : pandas.DataFrame
        The rows to show; its index is ignored.
    labels : mapping, optional
        Column -> header text; columns not in it keep their name.
    formats : mapping, optional
        Column -> a format spec (``".1%"``) or a function from the value to the cell's text; :func:`number`
        otherwise. :class:`Html` values are inserted as they are.
    row_classes : sequence of str, optional
        A CSS class per row (e.g. ``"flagged"``).
    bold : set of (row position, column), optional
        Cells shown in bold (e.g. the best value of a column).
    caption : str
        A line above the table.
    header : bool
        Whether to show the column headers.
    """
    labels, formats, bold = labels or {}, formats or {}, bold or set()
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame}
    head = "".join(
        f"<th{' class=num' if numeric[c] else ''}>{escape(str(labels.get(c, c)))}</th>" for c in frame.columns
    )
    rows = []
    for i, record in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            text = _cell(value, formats.get(column))
            if (i, column) in bold:
                text = f"<b>{text}</b>"
            cells.append(f"<td{' class=num' if numeric[column] else ''}>{text}</td>")
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f'<div class="scroll"><table>{caption_html}{thead}<tbody>{"".join(rows)}</tbody></table></div>'


def _cell(value: Any, fmt: Format | None) -> str:
    if isinstance(value, Html):
        return value
    if callable(fmt):
        return escape(fmt(value))
    missing = value is None or (isinstance(value, float | np.floating) and math.isnan(value))
    return escape(number(value, None if missing else fmt))


def key_values(pairs: Mapping[str, Any], caption: str = "") -> str:
    """A two-column table of labels and values."""
    frame = pd.DataFrame({"what": list(pairs), "value": [_plain(v) for v in pairs.values()]}, dtype=object)
    return table(frame, caption=caption, header=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Html):
        return value
    if isinstance(value, list | tuple):
        return ", ".join(number(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {number(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return number(int(value))  # a count stored as a float in JSON
    return number(value)


def page(title: str, header: str, sections: Sequence[Section], plotly_js: str | None, footer: str = "") -> str:
    """The whole HTML document.

    Parameters
    ----------
    title : str
        The document title.
    header : str
        HTML of the page header's contents (heading and facts).
    sections : sequence of Section
        In page order; the table of contents links to each by id.
    plotly_js : str or None
        Plotly's JavaScript, inlined once in the head; None for a page without interactive figures.
    footer : str
        A line at the bottom.
    """
    toc = "".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section class="card" id="{s.id}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    script = f'<script type="text/javascript">{plotly_js}</script>' if plotly_js else ""
    return (
        '<!DOCTYPE html>\n<html lang="en" class="no-js"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<script>document.documentElement.className = "js";</script>'
        f"<style>{CSS}</style>{script}</head><body>"
        f'<header class="top"><div class="wrap">{header}</div></header>'
        f'<nav class="toc" aria-label="Contents"><div class="wrap"><ol>{toc}</ol></div></nav>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="wrap">{escape(footer)}</footer></body></html>\n'
    )
