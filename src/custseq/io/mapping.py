"""Column mapping: which user column plays which canonical role, given explicitly or detected by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from custseq.errors import MappingError, SchemaError
from custseq.schema import ROW_ID, UNIT_PRICE_ALIASES, TableSpec, normalise_name, snake_case

# Extra columns whose names say they are free text, not categories (product descriptions, notes).
TEXT_NAME_HINTS = ("description", "comment", "notes", "note", "name", "title", "message", "text")


@dataclass(frozen=True)
class ColumnMap:
    """The resolved mapping of one table.

    ``canonical`` maps each canonical column to its source column; a transactions amount computed as a
    product of two columns is in ``amount_product`` instead. ``extras`` maps each remaining column's
    safe name to its source column.
    """

    table: str
    canonical: dict[str, str]
    extras: dict[str, str]
    amount_product: tuple[str, str] | None = None
    detected: tuple[str, ...] = ()  # canonical columns found by name rather than mapped by the user
    text_hints: tuple[str, ...] = field(default=())  # extras that look like free text by their name

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (canonical column, source, how) for reports."""
        rows = []
        for name, src in self.canonical.items():
            rows.append((name, src, "detected" if name in self.detected else "mapped"))
        if self.amount_product:
            how = "detected" if "amount" in self.detected else "mapped"
            rows.append(("amount", " × ".join(self.amount_product), how))
        return rows


def parse_mapping_items(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Parse CLI ``--column`` items (``customer_id=CustomerID``, ``events.ts=When``) per table.

    Raises
    ------
    MappingError
        If an item is not ``name=column`` or names an unknown table.
    """
    out: dict[str, dict[str, str]] = {"transactions": {}, "customers": {}, "events": {}}
    for item in items:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise MappingError(f"--column {item!r} is not of the form name=column, e.g. customer_id=CustomerID")
        table, dot, canonical = name.strip().rpartition(".")
        table = table if dot else "transactions"
        if table not in out:
            raise MappingError(f"--column {item!r}: unknown table {table!r}; use transactions, customers or events")
        out[table][canonical] = column.strip()
    return out


def resolve(spec: TableSpec, columns: list[str], user: dict[str, str], *, detect: bool = True) -> ColumnMap:
    """Resolve the mapping of ``spec`` onto a table with ``columns``.

    Explicit mappings win; unmapped canonical columns are detected by name when ``detect`` is on;
    a missing transactions amount becomes quantity × unit price when both columns are there.

    Raises
    ------
    MappingError
        If a mapping names an unknown canonical column or a column the table does not have.
    SchemaError
        If a required column is neither mapped nor detected.
    """
    cmap = match(spec, columns, user, detect=detect)
    if missing := missing_roles(spec, cmap):
        python = f'ColumnsConfig({spec.name}={{"{missing[0]}": "<your column>"}})'
        raise SchemaError(
            f"{spec.name} is missing column(s) {missing}; found {columns}. "
            f"Map them with {fix_flag(spec.name, missing[0])} (in Python: columns={python} in the RunConfig)"
        )
    return cmap


def match(spec: TableSpec, columns: list[str], user: dict[str, str], *, detect: bool = True) -> ColumnMap:
    """:func:`resolve` without its check of the required columns: what the columns fill, required or not.

    Raises
    ------
    MappingError
        If a mapping names an unknown canonical column or a column the table does not have.
    """
    canonical, amount_product = _explicit(spec, columns, user)
    used = set(canonical.values())  # the factors of an amount product may still be detected (e.g. quantity)
    detected: list[str] = []
    if detect:
        for col in spec.columns:
            if col.name in canonical or (col.name == "amount" and amount_product):
                continue
            if found := _find_by_alias(columns, col.aliases, used):
                canonical[col.name] = found
                used.add(found)
                detected.append(col.name)
        if spec.name == "transactions" and "amount" not in canonical and not amount_product:
            price = _find_by_alias(columns, UNIT_PRICE_ALIASES, used - {canonical.get("quantity")})
            if price and "quantity" in canonical:
                amount_product = (canonical["quantity"], price)
                detected.append("amount")
    extras = _extras(spec, columns, used | set(canonical.values()) | set(amount_product or ()))
    text_hints = tuple(name for name, src in extras.items() if any(h in normalise_name(src) for h in TEXT_NAME_HINTS))
    return ColumnMap(spec.name, canonical, extras, amount_product, tuple(detected), text_hints)


def missing_roles(spec: TableSpec, cmap: ColumnMap) -> list[str]:
    """The required roles of ``spec`` that ``cmap`` leaves empty."""
    return [n for n in spec.required if n not in cmap.canonical and not (n == "amount" and cmap.amount_product)]


def fix_flag(table: str, role: str) -> str:
    """The ``--column`` option that maps ``role`` of ``table`` (``--column customers.customer_id=<your column>``)."""
    flag = f"--column {role if table == 'transactions' else f'{table}.{role}'}=<your column>"
    return flag + (" (or amount=<quantity column>*<price column>)" if role == "amount" else "")


def _explicit(spec: TableSpec, columns: list[str], user: dict[str, str]) -> tuple[dict[str, str], tuple | None]:
    canonical: dict[str, str] = {}
    amount_product = None
    for name, source in user.items():
        if name not in spec.names:
            raise MappingError(
                f"--column {name}={source}: {spec.name} has no column role {name!r}; roles are {list(spec.names)}"
            )
        parts = [p.strip() for p in source.split("*")] if name == "amount" and "*" in source else [source]
        for part in parts:
            if part not in columns:
                raise MappingError(
                    f"--column {name}={source}: {spec.name} has no column {part!r}; its columns are {columns}"
                )
        if len(parts) == 2:
            amount_product = (parts[0], parts[1])
        elif len(parts) > 2:
            raise MappingError(f"--column amount={source}: a product takes exactly two columns")
        else:
            canonical[name] = source
    return canonical, amount_product


def _find_by_alias(columns: list[str], aliases: tuple[str, ...], used: set[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for c in columns:
        if c not in used:
            by_norm.setdefault(normalise_name(c), c)
    return next((by_norm[a] for a in aliases if a in by_norm), None)


def _extras(spec: TableSpec, columns: list[str], used: set[str]) -> dict[str, str]:
    reserved = set(spec.names) | {ROW_ID, "token_type", "cutoff"}
    extras: dict[str, str] = {}
    for c in columns:
        if c in used:
            continue
        name = snake_case(c)
        while name in reserved or name in extras:
            name += "_x"
        extras[name] = c
    return extras
