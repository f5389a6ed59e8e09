"""Sections on the model itself: loss curves, attention, and the map of the customer embeddings."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from custseq.config import ReportConfig
from custseq.io.run_files import EpochRecord
from custseq.report import analysis, figures, interactive
from custseq.report.data import ReportData
from custseq.report.html import escaped, figure, heading, number, paragraph, table
from custseq.report.html import unavailable as na

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
            f"What the sequence model looked at for a few customers: their latest {cfg.attention_events} purchases "
            "in order (oldest first), each with its share of the model's attention as a bar (averaged over the "
            "encoder's layers and heads; the longest bar is the purchase the model weighed most)."
        )
    ]
    for c in customers:
        events = list(c.events)[-cfg.attention_events :]
        title = f"Customer {c.customer_id}: churn probability {number(c.churn_probability)}, expected value " + number(
            c.clv_expected
        )
        if not events:
            parts.append(paragraph(f"{title}: no events."))
            continue
        weights = np.atleast_2d(np.asarray(c.weights, dtype=float))[:, -len(events) :].mean(axis=0)
        parts += [heading(title), _attention_table(events, weights)]
    return "".join(parts)


def _attention_table(events: list[str], weights: np.ndarray) -> str:
    """One row per event: its date, what it was (item, amount) and its attention as a bar."""
    top = float(weights.max()) if len(weights) and weights.max() > 0 else 1.0
    rows = []
    for label, w in zip(events, weights, strict=True):
        date, *parts = label.split(" · ")
        bar = (
            f'<span class="track"><span class="bar" style="width:{100 * w / top:.0f}%"></span></span>'
            f'<span class="bar-value">{w:.0%}</span>'
        )
        rows.append(f"<tr><td>{escaped(date)}</td><td>{escaped(_in_words(parts))}</td>"
                    f'<td class="attn">{bar}</td></tr>')  # fmt: skip
    head = "<thead><tr><th>date</th><th>what</th><th>attention</th></tr></thead>"
    return f'<table class="attention">{head}<tbody>{"".join(rows)}</tbody></table>'


def _in_words(parts: list[str]) -> str:
    """An event label's parts after the date (item, then the amount of a purchase) as words."""
    if parts and re.fullmatch(r"-?[\d,]+(\.\d+)?", parts[-1]):
        item = ", ".join(p for p in parts[:-1] if p != "·")
        return f"bought {item} for {parts[-1]}" if item else f"spent {parts[-1]}"
    return ", ".join(p for p in parts if p != "·") or "event"


def embedding_map(data: ReportData, cfg: ReportConfig) -> str:
    if data.embeddings is None:
        return na(data.missing("embeddings.parquet"))
    if data.predictions is None:
        return na(f"{data.missing('predictions.parquet')}; the map is coloured by the predictions")
    if data.embeddings.shape[1] < 2:
        return na("the predictions come from BG/NBD + Gamma-Gamma alone: there are no customer embeddings to map")
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
