"""The report's static figures: pure functions from data to a matplotlib :class:`~matplotlib.figure.Figure`.

Figures are built as ``Figure`` objects, never through pyplot, so no backend is chosen and no global figure
state is touched; :mod:`custseq.report.html` renders them to SVG. Every function takes the numbers it shows
(arrays, or the frames of :mod:`custseq.report.analysis`) and reads no file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from custseq.report.analysis import PRIMARY, RocPrCurves

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    RcSettings: TypeAlias = dict[RcKeyType, str | float | bool | list[str]]  # rcParams, as mpl.rc_context takes them

STYLE: RcSettings = {
    "font.family": "sans-serif",
    "font.sans-serif": ["Helvetica Neue", "Helvetica", "Arial", "Liberation Sans", "DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
}
PALETTE = ("#1f5fa8", "#e07b39", "#3a9a5b", "#8e5ea2", "#c44e52", "#7f7f7f", "#b5a33a", "#2aa1b3")
ORDERING_LABELS = {
    "saved_value": "by expected saved value",
    "churn_probability": "by churn probability",
    "random": "random order",
}


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, custseq always the first (blue)."""
    ordered = [m for m in methods if m == PRIMARY] + [m for m in methods if m != PRIMARY]
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(ordered)}


def _styled(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the report's style, leaving the caller's rcParams as they were."""

    @functools.wraps(build)
    def styled(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(STYLE):
            return build(*args, **kwargs)

    return styled


@_styled
def roc_pr_figure(curves: RocPrCurves) -> Figure:
    """ROC (left) and precision-recall (right) curves of each method's churn probability.

    Parameters
    ----------
    curves : RocPrCurves
        From :func:`custseq.report.analysis.roc_pr_curves`.

    Returns
    -------
    Figure
        Two axes; one line per method (labelled with its AUC), plus the chance line on each.
    """
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    roc, pr = fig.subplots(1, 2)
    colours = method_colours([c.method for c in curves.rows])
    for c in curves.curves:
        roc.plot(c.fpr, c.tpr, color=colours[c.method], lw=1.6, label=f"{c.method} (AUC {c.auc:.3f})")
        pr.plot(c.recall, c.precision, color=colours[c.method], lw=1.6, label=f"{c.method} (AP {c.ap:.3f})")
    roc.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="chance")
    rate = curves.churn_rate
    pr.axhline(rate, color="#999999", lw=1, ls="--", label=f"chance (churn rate {rate:.2f})")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    roc.legend(loc="lower right")
    pr.legend(loc="lower left")
    return fig


@_styled
def calibration_figure(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Reliability diagram (observed churn rate against mean predicted probability) with counts per bin below.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Method -> :func:`~custseq.report.analysis.reliability_table`.

    Returns
    -------
    Figure
        Two axes: the reliability curves with the diagonal, and the customers per bin as bars.
    """
    fig = Figure(figsize=(7, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2])
    colours = method_colours(list(tables))
    width = 0.1 / max(len(tables), 1)
    for i, (method, table) in enumerate(tables.items()):
        filled = table[table["customers"] > 0]
        top.plot(
            filled["mean_predicted"], filled["observed"], marker="o", ms=4, lw=1.5, color=colours[method], label=method
        )
        centres = table["low"] + width * (i + 0.5)
        bottom.bar(centres, table["customers"], width=width * 0.9, color=colours[method], label=method)
    top.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfectly calibrated")
    top.set(ylabel="observed churn rate", title="Reliability (10 bins)", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.set(xlabel="predicted churn probability", ylabel="customers")
    return fig


@_styled
def gain_lift_figure(curves: Mapping[str, pd.DataFrame]) -> Figure:
    """Cumulative gain (left) and lift (right) of churners found, contacting by descending churn probability.

    Parameters
    ----------
    curves : mapping of str to pandas.DataFrame
        Method -> :func:`~custseq.report.analysis.gain_curve`.

    Returns
    -------
    Figure
        Two axes with one line per method, plus random order (the diagonal, and lift 1).
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    gain, lift = fig.subplots(1, 2)
    colours = method_colours(list(curves))
    for method, curve in curves.items():
        keep = _thin_frame(curve, 400)
        gain.plot(keep["share_contacted"], keep["share_churners"], color=colours[method], lw=1.6, label=method)
        start = keep[keep["share_contacted"] >= 0.01]  # the lift of the first few customers is noise
        lift.plot(start["share_contacted"], start["lift"], color=colours[method], lw=1.6, label=method)
    gain.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="random")
    lift.axhline(1, color="#999999", lw=1, ls="--", label="random")
    gain.set(xlabel="share of customers contacted", ylabel="share of churners found", title="Cumulative gain")
    gain.set(xlim=(0, 1), ylim=(0, 1.01))
    lift.set(xlabel="share of customers contacted", ylabel="lift", title="Lift", xlim=(0, 1))
    gain.legend(loc="lower right")
    lift.legend(loc="upper right")
    return fig


def _thin_frame(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame
    return frame.iloc[np.linspace(0, len(frame) - 1, max_points).round().astype(int)]


@_styled
def value_deciles_figure(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Mean predicted against mean actual value per decile of predicted value, one panel per method.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Method -> :func:`~custseq.report.analysis.value_decile_table`.

    Returns
    -------
    Figure
        One axes per method, each with two bar series (predicted, actual).
    """
    fig = Figure(figsize=(5 * max(len(tables), 1), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(tables), 1), sharey=True, squeeze=False)[0])
    colours = method_colours(list(tables))
    for ax, (method, table) in zip(axes, tables.items(), strict=False):
        x = table["decile"].to_numpy()
        ax.bar(x - 0.2, table["mean_predicted"], width=0.4, color=colours[method], label="mean predicted")
        ax.bar(x + 0.2, table["mean_actual"], width=0.4, color="#bbbbbb", label="mean actual")
        ax.set(title=method, xlabel="decile of predicted value (10 = highest)", xticks=x)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("value over the horizon")
    return fig


@_styled
def loss_curves_figure(history: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Training and validation loss per epoch, one panel per stage (pre-training, fine-tuning).

    Parameters
    ----------
    history : mapping of str to sequence of mapping
        Stage -> one record per epoch with ``epoch``, ``train_loss`` and ``val_loss`` (may be None).

    Returns
    -------
    Figure
        One axes per stage with a ``train`` line and, when any epoch has one, a ``validation`` line; a stage
        without epochs gets an axes that says so.
    """
    stages = list(history) or ["pretrain", "finetune"]
    fig = Figure(figsize=(5 * len(stages), 3.6), layout="constrained")
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    titles = {"pretrain": "Pre-training", "finetune": "Fine-tuning"}
    for ax, stage in zip(axes, stages, strict=True):
        records = list(history.get(stage) or [])
        ax.set_title(titles.get(stage, stage))
        if not records:
            ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes, color="#777")
            ax.set(xticks=[], yticks=[])
            continue
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
        train = [_number(r.get("train_loss")) for r in records]
        val = [_number(r.get("val_loss")) for r in records]
        ax.plot(epochs, train, marker="o", ms=3, lw=1.6, color=PALETTE[0], label="train")
        if not np.all(np.isnan(val)):
            ax.plot(epochs, val, marker="o", ms=3, lw=1.6, color=PALETTE[1], label="validation")
        ax.set(xlabel="epoch", ylabel="loss")
        ax.legend()
    return fig


def _number(x: Any) -> float:
    return float(x) if x is not None else np.nan


@_styled
@_styled
def embedding_map_figure(points: pd.DataFrame) -> Figure:
    """The 2-D embedding map twice: coloured by churn probability, and by expected value on a log scale.

    Parameters
    ----------
    points : pandas.DataFrame
        ``x``, ``y``, ``churn_probability`` and ``clv_expected`` per customer (from
        :func:`~custseq.report.analysis.embedding_map` joined with the predictions).

    Returns
    -------
    Figure
        Two axes, each with one rasterized scatter (a few KB in SVG however many points) and a colour bar.
    """
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    churn_ax, value_ax = fig.subplots(1, 2)
    size = float(np.clip(3000 / max(len(points), 1), 2, 14))
    churn = churn_ax.scatter(
        points["x"],
        points["y"],
        c=points["churn_probability"],
        cmap="RdYlBu_r",
        vmin=0,
        vmax=1,
        s=size,
        linewidths=0,
        rasterized=True,
    )
    value = points["clv_expected"].to_numpy(dtype=float)
    floor = log_floor(value)
    worth = value_ax.scatter(
        points["x"],
        points["y"],
        c=np.clip(value, floor, None),
        cmap="viridis",
        norm=LogNorm(vmin=floor, vmax=max(float(np.nanmax(value)) if len(value) else 1.0, floor * 10)),
        s=size,
        linewidths=0,
        rasterized=True,
    )
    fig.colorbar(churn, ax=churn_ax, label="churn probability")
    fig.colorbar(worth, ax=value_ax, label="expected value (log scale)")
    for ax, title in ((churn_ax, "Coloured by churn probability"), (value_ax, "Coloured by expected value")):
        ax.set(title=title, xticks=[], yticks=[])
        ax.grid(False)
    return fig


def log_floor(value: np.ndarray) -> float:
    """The lowest value a log colour scale shows: the 2nd percentile of positive values (zeros sit there)."""
    positive = value[np.isfinite(value) & (value > 0)]
    return float(np.percentile(positive, 2)) if len(positive) else 1.0


@_styled
def segments_figure(table: pd.DataFrame) -> Figure:
    """Share of customers and share of total expected value per segment, side by side.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`~custseq.report.analysis.segment_summary`: ``segment``, ``share`` and ``total_clv_expected``.

    Returns
    -------
    Figure
        One axes with two horizontal bar series, segments top to bottom in the rules' order.
    """
    fig = Figure(figsize=(8, 0.9 + 0.42 * max(len(table), 1)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(table))[::-1]
    total = float(table["total_clv_expected"].sum())
    value_share = table["total_clv_expected"] / total if total else table["total_clv_expected"] * 0
    ax.barh(y + 0.2, table["share"], height=0.4, color=PALETTE[0], label="share of customers")
    ax.barh(y - 0.2, value_share, height=0.4, color=PALETTE[1], label="share of expected value")
    ax.set_yticks(y, [s.replace("_", " ") for s in table["segment"]])
    ax.set(xlabel="share", xlim=(0, 1))
    ax.legend(loc="lower right")
    return fig


@_styled
def profit_figure(curve: pd.DataFrame, best: Mapping[str, Mapping[str, float]]) -> Figure:
    """Expected campaign profit against the share of customers contacted, for each ordering, best k marked.

    Parameters
    ----------
    curve : pandas.DataFrame
        ``share_contacted`` and ``profit_<ordering>`` per k (profit.json's ``curve``).
    best : mapping of str to mapping
        Ordering -> ``{"k", "profit"}``: the best number to contact.

    Returns
    -------
    Figure
        One axes with one line per ordering and one marker per best k.
    """
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    orderings = [c.removeprefix("profit_") for c in curve.columns if c.startswith("profit_")]
    for colour, ordering in zip(PALETTE, orderings, strict=False):
        keep = _thin_frame(curve, 600)
        label = ORDERING_LABELS.get(ordering, ordering)
        ax.plot(keep["share_contacted"], keep[f"profit_{ordering}"], color=colour, lw=1.6, label=label)
        if ordering in best:
            share = share_at(curve, int(best[ordering]["k"]))
            ax.plot([share], [best[ordering]["profit"]], marker="o", ms=6, color=colour, mec="white", mew=1, label="_")
    for i, mark in enumerate(best_k_labels(curve, best, orderings)):
        ax.annotate(mark.text, (mark.share, mark.profit), textcoords="offset points", xytext=(6, 6 + 12 * i),
                    fontsize=8)  # fmt: skip
    ax.axhline(0, color="#999999", lw=1)
    ax.set(xlabel="share of customers contacted (the top k of each ordering)", ylabel="expected profit", xlim=(0, 1))
    ax.legend(loc="lower left")
    return fig


@dataclass(frozen=True)
class BestKLabel:
    """One label of the profit chart's best-k markers (orderings with the same best k share one)."""

    share: float
    profit: float
    text: str


def best_k_labels(
    curve: pd.DataFrame, best: Mapping[str, Mapping[str, float]], orderings: Sequence[str]
) -> list[BestKLabel]:
    """The best-k labels, one per distinct k, left to right; the charts stack them (one line up each) so that
    close ones do not overlap."""
    by_k: dict[int, list[str]] = {}
    for ordering in orderings:
        if ordering in best:
            by_k.setdefault(int(best[ordering]["k"]), []).append(ordering)
    labels = []
    for k, sharing in sorted(by_k.items()):
        text = f"best k = {k:,}"
        if len(sharing) > 1:
            text += " (" + ", ".join(ORDERING_LABELS.get(o, o).removeprefix("by ") for o in sharing) + ")"
        labels.append(BestKLabel(share_at(curve, k), float(best[sharing[0]]["profit"]), text))
    return labels


def share_at(curve: pd.DataFrame, k: int) -> float:
    """The share of customers contacted at ``k`` on a profit curve (k / n when the curve has no ``k``)."""
    if "k" in curve.columns:
        return float(np.interp(k, curve["k"], curve["share_contacted"]))
    return k / max(len(curve) - 1, 1)
