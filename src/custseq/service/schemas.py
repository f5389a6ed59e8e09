"""Request and response bodies of the HTTP API: the data contract's canonical names, strict types.

Requests are refused field by field (pydantic's 422 ``detail`` names the path of each bad value). Types are
strict where a lax reading would guess: an amount is a JSON number (never the text ``"20.5"`` or ``true``), a
timestamp is ISO 8601 text (never a number read as Unix seconds), and non-finite numbers are refused.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

EARLIEST = dt.datetime(1900, 1, 1)
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable: ids end up in CSV files and logs of the caller's tools
ATTRIBUTE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def _iso_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be ISO 8601 text such as 1997-01-03 or 1997-01-03T14:05:00")
    return value


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """The data contract's timestamps are naive UTC; an offset is converted, then dropped."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if value < EARLIEST:
        raise ValueError(f"is before {EARLIEST.date()}, which is not a real purchase date")
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_iso_text), AfterValidator(_naive_utc)]
Amount = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e12, le=1e12)]
Count = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e9, le=1e9)]
Label = Annotated[str, Field(strict=True, min_length=1, max_length=200, pattern=ID_PATTERN)]
CustomerId = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=ID_PATTERN)]
ProfileValue = Annotated[str, Field(strict=True, max_length=200)] | StrictBool | Amount | None


MAX_TEXT_CHARS = 10_000  # of an event's text; longer texts are refused (422), never cut silently


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransactionIn(_Strict):
    """One purchase (negative amount: a refund). Optional fields are the data contract's optional columns."""

    ts: Timestamp
    amount: Amount
    product: Label | None = None
    category: Label | None = None
    channel: Label | None = None
    quantity: Count | None = None
    is_refund: StrictBool | None = None
    cost: Amount | None = None
    currency: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")] | None = None
    order_id: Label | None = None


class EventIn(_Strict):
    """One behaviour event (a visit, a support ticket…), with its text when it has one (a ticket, a review)."""

    ts: Timestamp
    event: Label
    text: Annotated[str, Field(strict=True, max_length=MAX_TEXT_CHARS)] | None = None


class CustomerIn(_Strict):
    """One customer: their transactions, and optionally a profile (signup_ts and attributes) and events."""

    customer_id: CustomerId
    transactions: list[TransactionIn] = Field(min_length=1)
    profile: dict[Annotated[str, Field(pattern=ATTRIBUTE_NAME)], ProfileValue] | None = Field(
        default=None, max_length=100
    )
    events: list[EventIn] | None = None


class ScoreRequest(_Strict):
    """A batch of customers scored as of one date (inclusive: everything up to the end of that day is known)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "as_of": "1998-06-30",
                    "customers": [
                        {
                            "customer_id": "a1",
                            "transactions": [
                                {"ts": "1997-01-03", "amount": 20.5, "quantity": 2},
                                {"ts": "1997-04-11", "amount": 41.0, "quantity": 3},
                            ],
                        }
                    ],
                }
            ]
        },
    )

    as_of: Annotated[dt.date, BeforeValidator(_iso_text)]
    customers: list[CustomerIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ScoreRequest:
        if self.as_of < EARLIEST.date():
            raise ValueError(f"as_of {self.as_of} is before {EARLIEST.date()}")
        ids = [c.customer_id for c in self.customers]
        if len(set(ids)) < len(ids):
            repeated = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
            raise ValueError(f"customer_id must be unique in a request; repeated: {repeated}")
        end = dt.datetime.combine(self.as_of, dt.time()) + dt.timedelta(days=1)  # as_of is inclusive
        for i, c in enumerate(self.customers):
            times = [t.ts for t in c.transactions] + [e.ts for e in c.events or []]
            if late := [ts for ts in times if ts >= end]:
                raise ValueError(
                    f"customers[{i}] ({c.customer_id}) has {len(late)} transaction(s) or event(s) after as_of "
                    f"{self.as_of} (first {min(late).isoformat()}): send only what was known by the end of as_of"
                )
        return self


class NextAction(BaseModel):
    """One step of a customer's plan (the ``next_actions`` records of predictions.csv)."""

    model_config = ConfigDict(extra="allow")


class Prediction(BaseModel):
    """One customer's scores: the fields of predictions.csv, the list columns as lists."""

    customer_id: str | int
    churn_probability: float | None
    clv_expected: float | None
    clv_p10: float | None
    clv_p50: float | None
    clv_p90: float | None
    clv_if_active: float | None
    p_alive: float | None
    lapsed_regular: bool | None
    segment: str | None
    value_score: float | None
    contact_profit: float | None
    next_items: list[Any] | None
    retention_flag: bool | None
    next_actions: list[dict[str, Any]] | None


class ScoreResponse(BaseModel):
    """Scores for every customer with history before the cutoff, and what the pipeline could not use."""

    as_of: str
    horizon_days: int
    predictions: list[Prediction]
    not_scored: list[str] = Field(description="customer ids the pipeline set aside (their rows were quarantined)")
    unknown_values: dict[str, int] = Field(description="values the model has not seen, mapped to its unknown id")


class Embedding(BaseModel):
    customer_id: str | int
    embedding: list[float]


class EmbedResponse(BaseModel):
    as_of: str
    dimension: int
    embeddings: list[Embedding]
    not_scored: list[str]


class ModelInfo(BaseModel):
    """What the served model is: its version, training windows, horizon, validation metrics and fields."""

    custseq_version: str
    model_type: str
    created_at: str
    data_fingerprint: str
    cutoffs: list[str]
    horizon_days: int
    validation_metrics: dict[str, float]
    transaction_fields: list[str]
    profile_fields: list[str]
    event_fields: list[str]
    prediction_fields: list[str]


class Status(BaseModel):
    status: str
