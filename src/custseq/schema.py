"""Column contracts: the canonical tables custseq reads, their roles, and the names it recognises.

This module is the only source of column identifiers that reach SQL; user column names are quoted
with :func:`quote_ident` wherever they are used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a column's values are parsed and used."""

    ID = "id"  # string key, never numeric (leading zeros matter)
    TIMESTAMP = "timestamp"  # date or date-time; normalised to naive UTC
    NUMBER = "number"  # float64
    BOOLEAN = "boolean"
    CATEGORY = "category"  # string label, encoded through a vocabulary
    TEXT = "text"  # free text; events.text becomes numbers in custseq.text, other text columns are kept unused


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: its name, kind, whether it is required, and the names that map to it."""

    name: str
    kind: Kind
    required: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """The contract of one input table."""

    name: str
    columns: tuple[ColumnSpec, ...]

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


CUSTOMER_ID_ALIASES = (
    "customerid",
    "customer",
    "custid",
    "clientid",
    "userid",
    "memberid",
    "accountid",
    "customerno",
    "customernumber",
    "masterid",
)

TRANSACTIONS = TableSpec(
    "transactions",
    (
        ColumnSpec("customer_id", Kind.ID, True, CUSTOMER_ID_ALIASES),
        ColumnSpec(
            "ts",
            Kind.TIMESTAMP,
            True,
            (
                "ts",
                "timestamp",
                "date",
                "datetime",
                "invoicedate",
                "orderdate",
                "transactiondate",
                "purchasedate",
                "transactiontime",
                "time",
                "createdat",
                "eventtime",
            ),
        ),
        ColumnSpec(
            "amount",
            Kind.NUMBER,
            True,
            (
                "amount",
                "revenue",
                "sales",
                "totalamount",
                "total",
                "netamount",
                "dollarvalue",
                "value",
                "spend",
                "ordervalue",
                "totalprice",
                "linetotal",
                "monetaryvalue",
            ),
        ),
        ColumnSpec(
            "product",
            Kind.CATEGORY,
            False,
            ("product", "productid", "stockcode", "sku", "item", "itemid", "productcode", "article"),
        ),
        ColumnSpec("category", Kind.CATEGORY, False, ("category", "productcategory", "department", "categoryid")),
        ColumnSpec("channel", Kind.CATEGORY, False, ("channel", "saleschannel", "platform", "store", "storeid")),
        ColumnSpec(
            "quantity",
            Kind.NUMBER,
            False,
            ("quantity", "qty", "numberofcds", "units", "itemcount", "nitems", "numitems"),
        ),
        ColumnSpec("is_refund", Kind.BOOLEAN, False, ("isrefund", "refund", "isreturn", "returned")),
        ColumnSpec("cost", Kind.NUMBER, False, ("cost", "cogs", "totalcost")),
        ColumnSpec("currency", Kind.CATEGORY, False, ("currency", "currencycode")),
        ColumnSpec(
            "order_id",
            Kind.ID,
            False,
            (
                "orderid",
                "invoiceno",
                "invoice",
                "invoiceid",
                "invoicenumber",
                "transactionid",
                "orderno",
                "ordernumber",
                "basketid",
            ),
        ),
    ),
)

CUSTOMERS = TableSpec(
    "customers",
    (
        ColumnSpec("customer_id", Kind.ID, True, CUSTOMER_ID_ALIASES),
        ColumnSpec(
            "signup_ts",
            Kind.TIMESTAMP,
            False,
            (
                "signupts",
                "signupdate",
                "signup",
                "registrationdate",
                "registeredat",
                "joined",
                "joindate",
                "createdat",
            ),
        ),
    ),
)

EVENTS = TableSpec(
    "events",
    (
        ColumnSpec("customer_id", Kind.ID, True, CUSTOMER_ID_ALIASES),
        ColumnSpec(
            "ts",
            Kind.TIMESTAMP,
            True,
            ("ts", "timestamp", "datetime", "eventtime", "date", "time", "createdat"),
        ),
        ColumnSpec("event", Kind.CATEGORY, True, ("event", "eventtype", "eventname", "action", "type")),
        ColumnSpec("text", Kind.TEXT, False, ("text", "message", "body", "comment", "note")),
    ),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (TRANSACTIONS, CUSTOMERS, EVENTS)}

# When transactions have no amount column, amount = quantity x unit price (e.g. UCI Online Retail).
UNIT_PRICE_ALIASES = ("unitprice", "price", "itemprice", "priceeach", "unitcost")

# Internal columns added by custseq; user columns may not use these names.
ROW_ID = "row_id"  # position of the row in the input, 1-based; stable tie-break for equal timestamps
TOKEN_TYPES = {"transaction": 0, "event": 1}
# Numbers custseq adds to each event with a text (custseq.text): its sentiment, then its vector text_svd_1…
TEXT_SENTIMENT = "text_sentiment"


def text_svd_columns(dims: int) -> tuple[str, ...]:
    """Names of an event text's vector columns: ``text_svd_1`` … ``text_svd_<dims>``."""
    return tuple(f"text_svd_{i}" for i in range(1, dims + 1))


def normalise_name(name: str) -> str:
    """Lower-case a column name and drop everything but letters and digits (``Customer ID`` -> ``customerid``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def snake_case(name: str) -> str:
    """A safe snake_case identifier for an extra attribute column (``Unit Price`` -> ``unit_price``)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()
    if not s or s[0].isdigit():
        s = f"attr_{s}"
    return s


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB SQL (doubling embedded quotes)."""
    return '"' + name.replace('"', '""') + '"'
