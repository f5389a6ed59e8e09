"""Apply rules to a staged table: clean rows go on, broken rows go to quarantine with their reason.

Invariant, checked here on every table: rows in = rows used + rows quarantined.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import ValidationConfig
from custseq.errors import ConfigError, EmptyTableError, QuarantineError
from custseq.io.engine import drop_tables, fetch_arrow, fetch_scalar
from custseq.io.sources import RAW_ROW, bad_lines_table
from custseq.schema import ROW_ID, Kind, quote_ident
from custseq.validate.parse import Staged
from custseq.validate.rules import Rule, rules_for


@dataclass(frozen=True)
class CleanTable:
    """A validated table in DuckDB (``clean_<table>``) and the account of its rows."""

    table: str
    sql_name: str
    kinds: dict[str, Kind]  # columns of the clean table (besides row_id) and their kinds
    rows_in: int
    rows_used: int
    rows_quarantined: int
    rule_counts: dict[str, int]  # quarantined rows per rule (first rule broken)
    flag_counts: dict[str, int] = field(default_factory=dict)  # kept-but-flagged rows per rule
    reasons: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def has(self, column: str) -> bool:
        return column in self.kinds

    def columns_of(self, *kinds: Kind) -> tuple[str, ...]:
        return tuple(c for c, k in self.kinds.items() if k in kinds)


def check_row_accounting(table: str, rows_in: int, rows_used: int, rows_quarantined: int) -> None:
    """Raise :class:`QuarantineError` unless rows in = rows used + rows quarantined."""
    if rows_in != rows_used + rows_quarantined:
        raise QuarantineError(
            f"{table}: {rows_in} rows in but {rows_used} used + {rows_quarantined} quarantined; "
            "rows were lost — please report this as a bug"
        )


def apply(
    con: duckdb.DuckDBPyConnection,
    staged: Staged,
    cfg: ValidationConfig,
    *,
    future_cutoff: dt.datetime | None = None,
    quarantine_dir: Path | None = None,
) -> CleanTable:
    """Validate a staged table into ``clean_<table>``; write quarantined rows when a folder is given.

    Raises
    ------
    EmptyTableError
        If no row survives validation (naming the most common reason).
    QuarantineError
        If row accounting fails.
    """
    dup_table = _duplicate_rows(con, staged) if cfg.duplicates != "keep" else None
    bad_lines = _bad_lines(con, staged.raw_name)
    rules = rules_for(staged, cfg, future_cutoff=future_cutoff, dup_table=dup_table, bad_lines=bad_lines)
    judged = f"judged_{staged.table}"
    first_pass = [r for r in rules if r.action == "quarantine" and not r.among_valid]
    params = _params(first_pass + [r for r in rules if r.action == "flag"])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {judged} AS SELECT *, "
        f"{_first_rule_case(first_pass)} AS __rule, "
        f"{_first_rule_case([r for r in rules if r.action == 'flag'])} AS __flag FROM {staged.sql_name}",
        params,
    )
    for rule in (r for r in rules if r.among_valid):
        predicate = rule.predicate.format(valid=f"(SELECT * FROM {judged} WHERE __rule IS NULL)")
        con.execute(f"UPDATE {judged} SET __rule = '{rule.name}' WHERE __rule IS NULL AND ({predicate})", rule.params)
    rule_counts = dict(
        con.execute(
            f"SELECT __rule, count(*) FROM {judged} WHERE __rule IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    )
    flag_counts = dict(
        con.execute(
            f"SELECT __flag, count(*) FROM {judged} WHERE __rule IS NULL AND __flag IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    kinds = dict(staged.kinds)
    sql_name = f"clean_{staged.table}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {sql_name} AS SELECT {_clean_select(staged)} FROM {judged} WHERE __rule IS NULL"
    )
    if staged.table == "transactions":
        kinds["is_refund"] = Kind.BOOLEAN
    rows_in = fetch_scalar(con, f"SELECT count(*) FROM {quote_ident(staged.raw_name)}")
    rows_used = fetch_scalar(con, f"SELECT count(*) FROM {sql_name}")
    rows_quarantined = sum(rule_counts.values())
    check_row_accounting(staged.table, rows_in, rows_used, rows_quarantined)
    reasons = {r.name: r.reason for r in rules}
    if quarantine_dir is not None:
        try:
            _write_quarantine(con, staged, judged, reasons, quarantine_dir)
        except OSError as e:
            raise ConfigError(
                f"cannot write the quarantined rows into {quarantine_dir} ({e.strerror or e}); pass a folder you "
                "can write with --quarantine-dir"
            ) from None
    if rows_used == 0:
        top = max(rule_counts, key=rule_counts.__getitem__)
        raise EmptyTableError(
            f"no {staged.table} row passed validation; {rule_counts[top]} of {rows_in} broke rule {top!r} "
            f"({reasons[top]}); check the column mapping and formats"
        )
    notes = list(staged.notes)
    kept = dup_table and fetch_scalar(
        con, f"SELECT count(*) FROM {judged} WHERE __rule IS NULL AND row_id IN (SELECT row_id FROM {dup_table})"
    )
    if kept:
        notes.append(
            f"{staged.table}: {kept:,} exact duplicate rows kept (dates without a time and no order id: identical "
            "rows can be separate purchases on one day); set validation.duplicates = 'quarantine' to remove them"
        )
    drop_tables(con, judged, *([dup_table] if dup_table else []), *([quote_ident(bad_lines)] if bad_lines else []))
    return CleanTable(
        staged.table,
        sql_name,
        kinds,
        rows_in,
        rows_used,
        rows_quarantined,
        rule_counts,
        flag_counts,
        reasons,
        tuple(notes),
    )


def _bad_lines(con: duckdb.DuckDBPyConnection, raw: str) -> str | None:
    """The table of the raw file's unreadable lines, when it has any."""
    name = bad_lines_table(raw)
    found = fetch_scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name])
    return name if found else None


def _duplicate_rows(con: duckdb.DuckDBPyConnection, staged: Staged) -> str:
    cols = [c for c in con.table(staged.raw_name).columns if c != RAW_ROW]
    partition = ", ".join(quote_ident(c) for c in cols)
    name = f"dup_{staged.table}"
    raw = quote_ident(staged.raw_name)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {RAW_ROW} AS row_id FROM {raw} "
        f"WHERE {RAW_ROW} NOT IN (SELECT min({RAW_ROW}) FROM {raw} GROUP BY {partition})"
    )
    return name


def _params(rules: list[Rule]) -> dict:
    params: dict = {}
    for r in rules:
        for k, v in r.params.items():
            if k in params and params[k] != v:
                raise ValueError(f"rule parameter {k!r} is bound twice with different values")
            params[k] = v
    return params


def _first_rule_case(rules: list[Rule]) -> str:
    if not rules:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(f"WHEN coalesce(({r.predicate}), false) THEN '{r.name}'" for r in rules)
    return f"CASE {whens} END"


def _clean_select(staged: Staged) -> str:
    cols = [ROW_ID]
    for name in staged.kinds:
        if staged.table == "transactions" and name in ("amount", "cost", "is_refund"):
            continue
        cols.append(quote_ident(name))
    if staged.table == "transactions":
        marked = "coalesce(is_refund, false)" if staged.has("is_refund") else "false"
        refund = f"({marked} OR amount < 0)"
        # A refund always carries a negative amount and cost, so sums net it out and amount - cost is its margin.
        cols.append(f"CASE WHEN {refund} THEN -abs(amount) ELSE amount END AS amount")
        if staged.has("cost"):
            cols.append(f"CASE WHEN {refund} THEN -abs(cost) ELSE cost END AS cost")
        cols.append(f"{refund} AS is_refund")
    return ", ".join(cols)


def _write_quarantine(
    con: duckdb.DuckDBPyConnection, staged: Staged, judged: str, reasons: dict[str, str], folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    raw_cols = ", ".join(f"r.{quote_ident(c)}" for c in con.table(staged.raw_name).columns if c != RAW_ROW)
    for column, suffix in (("__rule", ""), ("__flag", ".flagged")):
        where = f"j.{column} IS NOT NULL" + (" AND j.__rule IS NULL" if suffix else "")
        rows = fetch_arrow(
            con,
            f"SELECT j.{ROW_ID} AS row_number, j.{column} AS rule, {raw_cols} FROM {judged} j "
            f"JOIN {quote_ident(staged.raw_name)} r ON r.{RAW_ROW} = j.{ROW_ID} WHERE {where} ORDER BY j.{ROW_ID}",
        )
        path = folder / f"{staged.table}{suffix}.parquet"
        if rows.num_rows == 0:
            path.unlink(missing_ok=True)
            continue
        reason = pa.array([reasons[r] for r in rows.column("rule").to_pylist()], pa.string())
        pq.write_table(rows.add_column(2, "reason", reason), path)
