"""Column roles: what each role of the data contract means, and how a user's table fills it.

``custseq columns`` and :func:`custseq.columns` answer before anything runs: every role with the source column
it maps to and how (mapped, detected by name, computed as quantity × unit price, or missing), the columns left
over and what they become, and the option that maps a missing required role. Only the first rows are read,
through validation's own reading, mapping and typing, so the answer is the one ``validate`` and ``predict`` act on
(except that the kind of an extra column is inferred from those rows only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import duckdb

from custseq.config import RunConfig
from custseq.errors import SchemaError
from custseq.io.engine import drop_tables, fetch_scalar
from custseq.io.mapping import ColumnMap, fix_flag, match, missing_roles
from custseq.io.sources import Source, load_raw
from custseq.io.tables import Tables
from custseq.schema import TABLES, Kind, quote_ident
from custseq.validate.parse import TEXT_TYPES, stage

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 20_000  # rows read to look at a table (as many as the timestamp-format detection reads)

# One line per role of schema.TABLES (tests/test_docs.py checks that they match), saying what custseq
# does with it.
MEANINGS: dict[str, dict[str, str]] = {
    "transactions": {
        "customer_id": "who bought; the key of the customers and events tables too",
        "ts": "when: a date or date-time (time zones converted to UTC)",
        "amount": "net value of the row; negative for a refund",
        "product": "what was bought: a sequence field, product features, next items",
        "category": "the product's category: a sequence field, category features",
        "channel": "where (store, web, app): a sequence field, channel counts",
        "quantity": "units bought: a sequence field, basket features",
        "is_refund": "true for a return or refund (amount and cost made negative)",
        "cost": "cost of the goods sold: margin features",
        "currency": "currency code; rows with an unknown code are quarantined",
        "order_id": "groups rows into orders: one sequence step per order, basket features",
    },
    "customers": {
        "customer_id": "the customer, as in transactions",
        "signup_ts": "signup date: the days_since_signup feature",
    },
    "events": {
        "customer_id": "who did it, as in transactions",
        "ts": "when: a date or date-time (time zones converted to UTC)",
        "event": "what happened (page view, login, call): a sequence field",
        "text": "a ticket or review: its sentiment and a TF-IDF vector feed the event tokens and the text features",
    },
}

# What is lost when an optional role is missing, where that is not obvious.
WHEN_MISSING = {
    ("transactions", "order_id"): "one sequence step per row instead of per order",
}


@dataclass(frozen=True)
class RoleRow:
    """One role of a table (or, with ``role`` None, a source column without a role) and how it is filled."""

    table: str
    role: str | None  # None: a source column that fills no role (an extra attribute)
    required: bool
    meaning: str
    source: str | None = None  # the source column, "Quantity × UnitPrice" for a computed amount; None: missing
    how: str = ""  # mapped, detected, computed, missing or extra; "" for the contract alone
    kind: str = ""  # how the values are read: id, timestamp, number, boolean, category or text
    # a detected format, the --column option of a missing required role, what is lost without an optional one, or
    # (for the contract alone) the names custseq detects
    note: str = ""


@dataclass(frozen=True)
class TableColumns:
    """How one table's columns fill its roles."""

    table: str
    source: str  # where the table comes from, as the user gave it
    rows_read: int  # the sample looked at (the first rows)
    sample_full: bool  # True: the table may have more rows than were read
    rows: tuple[RoleRow, ...]
    fixes: tuple[str, ...] = ()  # the --column option of each missing required role
    problems: tuple[str, ...] = ()  # what stops validation besides missing roles (an unparsable column)

    @property
    def roles(self) -> tuple[RoleRow, ...]:
        return tuple(r for r in self.rows if r.role is not None)

    @property
    def extras(self) -> tuple[RoleRow, ...]:
        return tuple(r for r in self.rows if r.role is None)


@dataclass(frozen=True)
class ColumnsReport:
    """The column roles of every table given (or of the contract alone, without tables)."""

    tables: tuple[TableColumns, ...] = field(default=())

    @property
    def rows(self) -> tuple[RoleRow, ...]:
        return tuple(r for t in self.tables for r in t.rows)

    @property
    def ok(self) -> bool:
        """True when every required role is filled and every mapped column parses."""
        return not any(t.fixes or t.problems for t in self.tables)

    def frame(self) -> pd.DataFrame:
        """One row per role and per extra column: table, role, required, meaning, source, how, kind, note."""
        return frame_of(self.rows)


def frame_of(rows: tuple[RoleRow, ...]) -> pd.DataFrame:
    """Rows as a DataFrame with one column per field of :class:`RoleRow`."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in rows], columns=list(RoleRow.__dataclass_fields__))


def contract_roles(table: str | None = None) -> tuple[RoleRow, ...]:
    """The roles of ``table`` (every table when None) as the data contract defines them, with the names detected."""
    names = [table] if table else list(TABLES)
    return tuple(
        RoleRow(
            name,
            spec.name,
            spec.required,
            MEANINGS[name][spec.name],
            kind=spec.kind.value,
            note="names detected: " + ", ".join(spec.aliases),
        )
        for name in names
        for spec in TABLES[name].columns
    )


def explain_into(con: duckdb.DuckDBPyConnection, tables: Tables, config: RunConfig | None = None) -> ColumnsReport:
    """Read the first rows of every table given and say how its columns fill the roles.

    Raises
    ------
    CustseqError
        If a source cannot be read, has no rows, or a ``--column`` mapping names an unknown role or column.
    """
    cfg = config or RunConfig()
    columns = tables.columns or cfg.columns
    return ColumnsReport(
        tuple(
            _explain_table(con, name, source, getattr(columns, name), detect=columns.detect, config=cfg)
            for name, source in tables.present()
        )
    )


def _explain_table(
    con: duckdb.DuckDBPyConnection, name: str, source: Source, user: dict[str, str], *, detect: bool, config: RunConfig
) -> TableColumns:
    raw = f"peek_{name}"
    raw_columns = load_raw(con, source, raw, rows=SAMPLE_ROWS)
    try:
        n = fetch_scalar(con, f"SELECT count(*) FROM {quote_ident(raw)}")
        spec = TABLES[name]
        cmap = match(spec, raw_columns, user, detect=detect)
        types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quote_ident(raw)})").fetchall())
        problems: list[str] = []
        try:
            staged = stage(con, raw, cmap, config.validation, config.sequence.max_category_share)
            kinds, notes = staged.kinds, staged.notes
        except SchemaError as e:  # a mapped column that parses in no row: said, and the rest still shown
            kinds, notes = {}, ()
            problems.append(str(e))
        rows = [*_role_rows(name, cmap, notes), *_extra_rows(name, cmap, kinds, types, config)]
        fixes = tuple(fix_flag(name, role) for role in missing_roles(spec, cmap))
        return TableColumns(name, source.label, n, n >= SAMPLE_ROWS, tuple(rows), fixes, tuple(problems))
    finally:
        con.execute(f"DROP VIEW IF EXISTS stg_{name}")  # stage's view over the sample
        drop_tables(con, raw)


def _role_rows(table: str, cmap: ColumnMap, notes: tuple[str, ...]) -> list[RoleRow]:
    rows = []
    for spec in TABLES[table].columns:
        role = spec.name
        how = "detected" if role in cmap.detected else "mapped"
        source, note = cmap.canonical.get(role), _note_of(table, role, notes)
        if role == "amount" and cmap.amount_product:
            source = " × ".join(cmap.amount_product)
            note = "quantity × unit price, " + ("by name" if how == "detected" else "as mapped")
            how = "computed"
        elif source is None:
            how, note = "missing", fix_flag(table, role) if spec.required else WHEN_MISSING.get((table, role), "")
        rows.append(RoleRow(table, role, spec.required, MEANINGS[table][role], source, how, spec.kind.value, note))
    return rows


def _note_of(table: str, role: str, notes: tuple[str, ...]) -> str:
    """The staging note of a role (``transactions.ts (InvoiceDate): format … detected`` -> ``format … detected``)."""
    prefix = f"{table}.{role} ("
    return next((n.partition("): ")[2] for n in notes if n.startswith(prefix)), "")


def _extra_rows(
    table: str, cmap: ColumnMap, kinds: dict[str, Kind], types: dict[str, str], config: RunConfig
) -> list[RoleRow]:
    rows = []
    for name, src in cmap.extras.items():
        kind = kinds.get(name)
        use = _extra_use(table, name, kind, config) if kind else "its use depends on its kind, read after the fix"
        if kind is Kind.TEXT:
            use += _why_text(name in cmap.text_hints, types[src])
        rows.append(RoleRow(table, None, False, f"{name}: {use}", src, "extra", kind.value if kind else ""))
    return rows


def _extra_use(table: str, name: str, kind: Kind, config: RunConfig) -> str:
    if kind not in (Kind.CATEGORY, Kind.NUMBER):
        return "kept, not used as a feature"
    field_kind = "category" if kind is Kind.CATEGORY else "number"
    if table == "transactions":
        return f"a {field_kind} field of the sequences"
    if table == "events":
        return f"a {field_kind} field of the sequences (event_{name})"
    if "profile" not in config.features.groups:
        return "not used (the profile feature group is off)"
    return f"the profile feature profile_{name}, audited for bias"


def _why_text(by_name: bool, dtype: str) -> str:
    if by_name:
        return " (free text, by its name)"
    if dtype in TEXT_TYPES:
        return " (too many distinct values for a category: an id or free text)"
    return f" (a {dtype.lower()} column)"


def roles_markdown() -> str:
    """The README's tables of every role per table: role, required and meaning."""
    parts = []
    for name, spec in TABLES.items():
        given = "DATA" if name == "transactions" else f"--{name} FILE"
        lines = [f"**{name}** (`{given}`)", "", "| role | required | meaning |", "|---|---|---|"]
        for col in spec.columns:
            lines.append(f"| `{col.name}` | {'yes' if col.required else 'no'} | {MEANINGS[name][col.name]} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
