"""Validate the user's tables on one connection: read, map, parse, apply the rules, quarantine, account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from custseq.config import RunConfig
from custseq.io.engine import drop_tables
from custseq.io.mapping import ColumnMap, resolve
from custseq.io.run_files import ColumnSource, RuleCount, TableAccount
from custseq.io.sources import load_raw
from custseq.io.tables import Tables
from custseq.schema import TABLES
from custseq.validate.currencies import refuse_mixed_currencies
from custseq.validate.parse import stage
from custseq.validate.quarantine import CleanTable, apply


@dataclass(frozen=True)
class ValidationReport:
    """What validation found: the mapping and the row account of every table."""

    mappings: dict[str, ColumnMap]
    tables: dict[str, CleanTable]
    integer_ids: dict[str, bool] = field(default_factory=dict)  # table -> its customer ids are integers

    def accounts(self) -> dict[str, TableAccount]:
        """Each table's mapping and row account, as run files record them."""
        return {
            name: _account(self.mappings[name], t, self.integer_ids.get(name, False)) for name, t in self.tables.items()
        }


def _account(m: ColumnMap, t: CleanTable, integer_ids: bool) -> TableAccount:
    return TableAccount(
        customer_id_type="integer" if integer_ids else "text",
        mapping=tuple(ColumnSource(column=c, source=s, how=h) for c, s, h in m.describe()),
        extras={c: t.kinds[c].value for c in m.extras if c in t.kinds},
        rows_in=t.rows_in,
        rows_used=t.rows_used,
        rows_quarantined=t.rows_quarantined,
        quarantined_by_rule={r: RuleCount(rows=n, reason=t.reasons[r]) for r, n in t.rule_counts.items()},
        flagged_by_rule={r: RuleCount(rows=n, reason=t.reasons[r]) for r, n in t.flag_counts.items()},
        notes=tuple(t.notes),
    )


def validate_into(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    config: RunConfig | None = None,
    *,
    quarantine_dir: Path | None = None,
    future_cutoff: dt.datetime | None = None,
) -> ValidationReport:
    """Read, map, parse and validate the tables into ``clean_<table>`` on ``con``.

    Rows at or after ``future_cutoff`` are handled as ``config.validation.future_rows`` says (customers are
    not dated), and have no say in how the columns are read (:mod:`custseq.validate.parse`); rejected rows go
    to ``quarantine_dir`` with their reasons.

    Raises
    ------
    CustseqError
        Any structural problem: unreadable source, missing or unknown column, empty table, ambiguous
        timestamps, amounts in several currencies (unless ``config.validation.mixed_currencies`` allows them).
    """
    cfg = config or RunConfig()
    columns = tables.columns or cfg.columns
    mappings, clean, integer = {}, {}, {}
    for name, source in tables.present():
        raw = f"raw_{name}"
        raw_columns = load_raw(con, source, raw)
        cmap = resolve(TABLES[name], raw_columns, getattr(columns, name), detect=columns.detect)
        cutoff = future_cutoff if name != "customers" else None
        staged = stage(con, raw, cmap, cfg.validation, cfg.sequence.max_category_share, before=cutoff)
        clean[name] = apply(con, staged, cfg.validation, future_cutoff=cutoff, quarantine_dir=quarantine_dir)
        mappings[name] = cmap
        integer[name] = staged.integer_ids
        if name == "transactions" and staged.has("currency"):
            refuse_mixed_currencies(con, clean[name].sql_name, cutoff, cfg.validation.mixed_currencies)
        con.execute(f"DROP VIEW IF EXISTS {staged.sql_name}")
        drop_tables(con, raw)
    return ValidationReport(mappings, clean, integer)


def validate_tables(
    con: duckdb.DuckDBPyConnection,
    transactions: Any,
    *,
    customers: Any = None,
    events: Any = None,
    config: RunConfig | None = None,
    quarantine_dir: Path | None = None,
    future_cutoff: dt.datetime | None = None,
) -> ValidationReport:
    """:func:`validate_into` for tables as a user passes them (paths, ``db.duckdb:table`` or frames), mapped
    with ``config.columns``."""
    tables = Tables.of(transactions, customers=customers, events=events)
    return validate_into(con, tables, config, quarantine_dir=quarantine_dir, future_cutoff=future_cutoff)
