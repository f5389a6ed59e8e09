"""`custseq columns`: every column role of the data contract, and how the user's tables fill them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from custseq.cli.app import (
    ColumnOpt,
    ConfigOpt,
    CustomersOpt,
    EventsOpt,
    app,
    console,
    fails_cleanly,
    run_config,
    tables_of,
)
from custseq.config import RunConfig
from custseq.errors import ConfigError
from custseq.validate.roles import SAMPLE_ROWS, ColumnsReport, TableColumns, contract_roles

HOW_STYLE = {"mapped": "green", "detected": "green", "computed": "green", "missing": "yellow"}


@app.command(
    "columns",
    help="Show how the tables' columns fill every role (mapped, detected, computed, missing) and how to fix it.\n\n"
    f"Also lists the columns without a role and what they become. Reads the first {SAMPLE_ROWS:,} rows of each table; "
    "without DATA, prints the roles of every table. Exits with code 1 when a required role is missing or a "
    "mapped column cannot be read.",
)
@fails_cleanly
def columns_cmd(
    data: Annotated[
        list[str] | None,
        typer.Argument(
            help="Transactions (CSV, Parquet or FILE.duckdb:TABLE); without it, the roles of every table.",
            show_default=False,
            metavar="DATA",
        ),
    ] = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    roles: Annotated[bool, typer.Option("--roles", help="Print the roles of every table and exit.")] = False,
) -> None:
    """Every column role, the source column it fills and how, the columns left over, and the fix of a missing one."""
    if roles or not data:
        if not roles and (customers or events):
            raise ConfigError("columns: pass the transactions file (DATA) with --customers or --events")
        print_contract()
        return
    cfg = run_config(config, column)
    report = explain(data, customers, events, cfg)
    print_columns(report)
    if not report.ok:
        raise typer.Exit(code=1)


def explain(data: list[str], customers: str | None, events: str | None, cfg: RunConfig) -> ColumnsReport:
    """How the tables fill their roles (also what ``validate --explain`` prints)."""
    from custseq.pipelines.columns import explain_columns

    return explain_columns(tables_of(data, customers, events, cfg), cfg)


def print_contract() -> None:
    """The roles of every table, as the data contract defines them."""
    rows = contract_roles()
    for table in dict.fromkeys(r.table for r in rows):
        grid = _table(f"{table}{'' if table == 'transactions' else f' (--{table} FILE)'}")
        grid.add_column("role", style="bold", no_wrap=True)
        grid.add_column("req.")
        grid.add_column("kind", no_wrap=True)
        grid.add_column("meaning; names detected", overflow="fold", ratio=1)
        for r in (r for r in rows if r.table == table):
            grid.add_row(r.role, "yes" if r.required else "no", r.kind, _two_lines(r.meaning, r.note))
        console.print(grid)
    console.print(
        "Map a column with [bold]--column ROLE=COLUMN[/] (customers.ROLE=…, events.ROLE=…); see how a file's "
        "columns fill the roles with [bold]custseq columns DATA[/].",
        highlight=False,
    )


def print_columns(report: ColumnsReport) -> None:
    for t in report.tables:
        _print_roles(t)
        _print_extras(t)
        for fix in t.fixes:
            console.print(f"[bold red]missing[/] required role: map it with [bold]{fix}[/]", highlight=False)
        for problem in t.problems:
            console.print(f"[bold red]problem:[/] {problem}", highlight=False)


def _print_roles(t: TableColumns) -> None:
    read = f"first {t.rows_read:,} rows read" if t.sample_full else f"all {t.rows_read:,} rows read"
    grid = _table(f"{t.table}: {t.source} ({read})")
    grid.add_column("role", style="bold", no_wrap=True)
    grid.add_column("req.")
    grid.add_column("source", overflow="fold", max_width=16)
    grid.add_column("how", no_wrap=True)
    grid.add_column("meaning", overflow="fold", ratio=1)
    for r in t.roles:
        how = Text(r.how, style=HOW_STYLE.get(r.how, ""))
        if r.how == "missing" and r.required:
            how.stylize("bold red")
        grid.add_row(r.role, "yes" if r.required else "no", r.source or "—", how, _two_lines(r.meaning, r.note))
    console.print(grid)


def _print_extras(t: TableColumns) -> None:
    if not t.extras:
        console.print(f"{t.table}: every column fills a role", highlight=False)
        return
    grid = _table(f"{t.table}: columns without a role (extra attributes)")
    grid.add_column("source", style="bold", overflow="fold", max_width=24)
    grid.add_column("kind", no_wrap=True)
    grid.add_column("becomes", overflow="fold", ratio=1)
    for r in t.extras:
        grid.add_row(r.source, r.kind or "?", r.meaning)
    console.print(grid)


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=False)


def _two_lines(first: str, second: str) -> Text:
    text = Text(first)
    if second:
        text.append("\n" + second, style="dim")
    return text
