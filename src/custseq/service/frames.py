"""Between JSON and the pipeline: a request as the tables ``custseq score`` reads, its output as response rows."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from custseq.config import ColumnsConfig
from custseq.io.tables import Tables
from custseq.service.schemas import CustomerIn, ScoreRequest

# The request uses the data contract's canonical names; detection maps each onto itself, whatever mapping the model
# was trained with (a model trained on CustomerID reads customer_id here).
CANONICAL = ColumnsConfig()
LIST_FIELDS = ("next_items", "next_actions")


def request_tables(request: ScoreRequest) -> Tables:
    """Transactions, profiles (when any customer has one) and events (when any has some) as DataFrames."""
    transactions = _rows(request.customers, "transactions")
    profiles = [{"customer_id": c.customer_id, **c.profile} for c in request.customers if c.profile is not None]
    has_events = any(c.events for c in request.customers)
    return Tables.of(
        transactions,
        customers=pd.DataFrame(profiles) if profiles else None,
        events=_rows(request.customers, "events") if has_events else None,
        columns=CANONICAL,
    )


def _rows(customers: list[CustomerIn], table: str) -> pd.DataFrame:
    """One row per transaction (or event), customer_id first; optional fields no customer sent are left out."""
    records = [
        {"customer_id": c.customer_id, **row.model_dump(exclude_none=True)}
        for c in customers
        for row in (getattr(c, table) or [])
    ]
    frame = pd.DataFrame.from_records(records)
    if "quantity" in frame:  # a JSON 2 and 2.0 are one quantity
        frame["quantity"] = frame["quantity"].astype(float)
    return frame


def prediction_rows(predictions: pd.DataFrame) -> list[dict[str, Any]]:
    """predictions.csv's rows as JSON-ready dicts: full precision, NaN as null, list columns as lists."""
    rows = []
    for record in predictions.to_dict(orient="records"):
        row = {str(k): _plain(v) for k, v in record.items()}
        for name in LIST_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        rows.append(row)
    return rows


def embedding_rows(embeddings: pd.DataFrame) -> list[dict[str, Any]]:
    """embeddings.parquet's rows as ``{"customer_id", "embedding": [e0, e1, …]}``."""
    dims = [c for c in embeddings.columns if c != "customer_id"]
    values = embeddings[dims].to_numpy(float)
    return [
        {"customer_id": _plain(i), "embedding": v.tolist()}
        for i, v in zip(embeddings["customer_id"], values, strict=True)
    ]


def not_scored(request: ScoreRequest, scored_ids: pd.Series) -> list[str]:
    """The requested customers the pipeline set aside (every row quarantined, e.g. an amount beyond its limit)."""
    scored = {str(i) for i in scored_ids}
    return [c.customer_id for c in request.customers if c.customer_id not in scored]


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, and NaN as None (JSON has no NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
