"""The report's interactive figures: pure functions from data to a Plotly :class:`~plotly.graph_objects.Figure`.

Only the figures where hovering or zooming helps have an interactive version: ROC and precision-recall, the
embedding map (hover shows the customer) and the profit curve. Each mirrors its static twin in
:mod:`custseq.report.figures`, which the report keeps for readers without JavaScript. The traces are SVG
(``go.Scatter``), not WebGL, so they draw on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from custseq.report.analysis import RocPrCurves
from custseq.report.figures import ORDERING_LABELS, PALETTE, best_k_labels, log_floor, method_colours, share_at

LAYOUT = {
    "template": "plotly_white",
    "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif", "size": 12},
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
}


def roc_pr_plotly(curves: RocPrCurves) -> go.Figure:
    """ROC and precision-recall curves of each method, side by side, hover showing the rates.

    Parameters
    ----------
    curves : RocPrCurves
        From :func:`custseq.report.analysis.roc_pr_curves`.

    Returns
    -------
    plotly.graph_objects.Figure
        Two subplots; per method one ROC trace and one PR trace (the PR one without a legend entry), then the
        two chance lines.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ROC", "Precision-recall"), horizontal_spacing=0.1)
    colours = method_colours([c.method for c in curves.rows])
    for c in curves.curves:
        method, line = c.method, {"color": colours[c.method], "width": 2}
        fig.add_trace(
            go.Scatter(
                x=c.fpr,
                y=c.tpr,
                mode="lines",
                name=f"{method} (AUC {c.auc:.3f})",
                line=line,
                legendgroup=method,
                hovertemplate=f"{method}<br>FPR %{{x:.3f}}<br>TPR %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=c.recall,
                y=c.precision,
                mode="lines",
                name=f"{method} (AP {c.ap:.3f})",
                line=line,
                legendgroup=method,
                showlegend=False,
                hovertemplate=f"{method}<br>recall %{{x:.3f}}<br>precision %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    chance = {"color": "#999999", "width": 1, "dash": "dash"}
    rate = curves.churn_rate
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=chance, hoverinfo="skip"), 1, 1)
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[rate, rate],
            mode="lines",
            name=f"chance (churn rate {rate:.2f})",
            line=chance,
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    # a little room below 0 keeps the two axes' "0" labels apart in the corner
    fig.update_xaxes(title_text="false positive rate", range=[-0.03, 1.01], row=1, col=1)
    fig.update_yaxes(title_text="true positive rate", range=[-0.03, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="recall", range=[-0.03, 1.01], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[-0.03, 1.02], row=1, col=2)
    fig.update_layout(
        **LAYOUT,
        height=430,
        legend={"bgcolor": "rgba(255,255,255,0.7)", "x": 0.3, "y": 0.05, "xanchor": "left", "yanchor": "bottom"},
    )
    return fig


def embedding_map_plotly(points: pd.DataFrame) -> go.Figure:
    """The embedding map coloured by churn probability and by expected value, hover showing each customer.

    Parameters
    ----------
    points : pandas.DataFrame
        ``customer_id``, ``x``, ``y``, ``churn_probability``, ``clv_expected`` and, optionally, ``segment``.

    Returns
    -------
    plotly.graph_objects.Figure
        Two subplots with one marker trace each; hover gives customer id, churn, value and segment.
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.14,  # no subplot titles: side by side they collide on a phone; the colour bars say it
    )
    segment = points["segment"] if "segment" in points.columns else pd.Series("", index=points.index)
    customdata = np.column_stack(
        [points["customer_id"].astype(str), points["churn_probability"], points["clv_expected"], segment.astype(str)]
    )
    hover = (
        "customer %{customdata[0]}<br>churn probability %{customdata[1]:.3f}<br>"
        "expected value %{customdata[2]:,.2f}<br>segment %{customdata[3]}<extra></extra>"
    )
    value = points["clv_expected"].to_numpy(dtype=float)
    log_value = np.log10(np.clip(value, log_floor(value), None))
    ticks = np.arange(np.floor(np.nanmin(log_value, initial=0)), np.ceil(np.nanmax(log_value, initial=1)) + 1)
    size = float(np.clip(2500 / max(len(points), 1), 3, 9))
    for col, (colour, scale, bar) in enumerate(
        (
            (
                points["churn_probability"],
                "RdYlBu_r",
                {"title": {"text": "churn probability", "side": "right"}, "x": 0.43},
            ),
            (
                log_value,
                "Viridis",
                {
                    "title": {"text": "expected value (log scale)", "side": "right"},
                    "x": 1.0,
                    "tickvals": ticks,
                    "ticktext": [f"{10**t:,.4g}" for t in ticks],
                },
            ),
        ),
        start=1,
    ):
        fig.add_trace(
            go.Scatter(
                x=points["x"],
                y=points["y"],
                mode="markers",
                customdata=customdata,
                hovertemplate=hover,
                showlegend=False,
                marker={
                    "color": colour,
                    "colorscale": scale,
                    "size": size,
                    "colorbar": bar,
                    **({"cmin": 0, "cmax": 1} if col == 1 else {}),
                },
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(**LAYOUT, height=480)
    return fig


def profit_plotly(curve: pd.DataFrame, best: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Expected campaign profit against the share contacted for each ordering, hover giving k and profit.

    Parameters
    ----------
    curve : pandas.DataFrame
        ``share_contacted``, optionally ``k``, and ``profit_<ordering>`` per k.
    best : mapping of str to mapping
        Ordering -> ``{"k", "profit"}``.

    Returns
    -------
    plotly.graph_objects.Figure
        One line trace per ordering, then one marker trace per best k.
    """
    fig = go.Figure()
    orderings = [c.removeprefix("profit_") for c in curve.columns if c.startswith("profit_")]
    keep = curve.iloc[np.unique(np.linspace(0, len(curve) - 1, min(len(curve), 800)).round().astype(int))]
    k = keep["k"] if "k" in keep.columns else pd.Series(np.arange(len(curve))[keep.index], index=keep.index)
    for colour, ordering in zip(PALETTE, orderings, strict=False):
        fig.add_trace(
            go.Scatter(
                x=keep["share_contacted"],
                y=keep[f"profit_{ordering}"],
                customdata=k,
                mode="lines",
                name=ORDERING_LABELS.get(ordering, ordering),
                line={"color": colour, "width": 2},
                hovertemplate="k = %{customdata:,}<br>share %{x:.1%}<br>profit %{y:,.2f}<extra></extra>",
            ),
        )
    for colour, ordering in zip(PALETTE, orderings, strict=False):
        if ordering in best:
            b = best[ordering]
            fig.add_trace(
                go.Scatter(
                    x=[share_at(curve, int(b["k"]))],
                    y=[b["profit"]],
                    mode="markers",
                    showlegend=False,
                    marker={"color": colour, "size": 10, "line": {"color": "white", "width": 1}},
                    hovertemplate=f"best k = {int(b['k']):,}<br>profit %{{y:,.2f}}<extra></extra>",
                ),
            )
    for i, mark in enumerate(best_k_labels(curve, best, orderings)):
        fig.add_annotation(x=mark.share, y=mark.profit, text=mark.text, showarrow=False, xanchor="left",
                           yanchor="bottom", xshift=6, yshift=6 + 16 * i, font={"size": 11})  # fmt: skip
    fig.update_xaxes(title_text="share of customers contacted (the top k of each ordering)", tickformat=".0%")
    fig.update_yaxes(title_text="expected profit", zeroline=True, zerolinecolor="#999999")
    fig.update_layout(
        **LAYOUT,
        height=430,
        legend={"bgcolor": "rgba(255,255,255,0.7)", "x": 0.01, "y": 0.01, "xanchor": "left", "yanchor": "bottom"},
    )
    return fig
