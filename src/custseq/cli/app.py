"""The command line's app, its shared options, and the one way every command builds its config."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.markup import escape

from custseq.config import (
    ColumnsConfig,
    ReportConfig,
    RunConfig,
    apply_settings,
    load_config,
    parse_date,
    parse_horizon,
)
from custseq.errors import CustseqError
from custseq.io.atomic import Terminated, terminate_as_exception
from custseq.io.mapping import parse_mapping_items
from custseq.io.tables import Tables
from custseq.progress import RunProgress
from custseq.version import __version__

app = typer.Typer(
    name="custseq",
    help="Churn and lifetime value, customer by customer, learned from raw event sequences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DataArg = Annotated[
    list[str],
    typer.Argument(
        help="Transactions: CSV (.csv, .csv.gz), Parquet, or a DuckDB table as FILE.duckdb:TABLE. "
        "Several files of one format are concatenated.",
        show_default=False,
        metavar="DATA",
    ),
]
CustomersOpt = Annotated[str | None, typer.Option("--customers", help="Customer profiles (customer_id, signup_ts, …).")]
EventsOpt = Annotated[str | None, typer.Option("--events", help="Behaviour events (customer_id, ts, event, …).")]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--column",
        "-c",
        help="Map a column: ROLE=COLUMN, e.g. customer_id=CustomerID, amount=Quantity*UnitPrice, events.ts=When. "
        "Repeatable. Unmapped obvious names are detected.",
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML or JSON config file; options override it.")]
CatalogueOpt = Annotated[
    str | None,
    typer.Option(
        help="Action catalogue: retail (default), grocery, subscription, or a JSON/YAML file of your own actions."
    ),
]
ProductsOpt = Annotated[
    str | None,
    typer.Option(
        help="Products table (CSV or Parquet: product_id, name, exclude) to name proposed items and never "
        "propose excluded ones (fuel, bags, postage)."
    ),
]
HorizonOpt = Annotated[str | None, typer.Option(help="Prediction horizon, e.g. 90d, 13w, 6m (default 90d).")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Inclusive scoring date YYYY-MM-DD (default: last day in the data).")
]


DEBUG_ENV = "CUSTSEQ_DEBUG"
_debug_option = {"given": False}  # set by the app's callback on every invocation
BUG = "this is a bug in custseq; please report it with the command and its --debug output"


def fails_cleanly(fn: Callable[..., None]) -> Callable[..., None]:
    """End every failure in one red line, never a traceback: a :class:`CustseqError` (the user's input) exits 2,
    any other exception (a bug) exits 1 and asks for a report; Ctrl-C and SIGTERM stop the command with one line
    too, after its staging and work folders are removed (exit 130 and 143). With ``--debug`` (or
    ``CUSTSEQ_DEBUG=1``) the traceback is printed first; the line and the exit code stay the same."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            with terminate_as_exception():
                fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # typer's own exits and usage errors: click prints them, with its exit code
        except CustseqError as e:
            _fail(str(e), 2)
        except (KeyboardInterrupt, Terminated) as e:
            how = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated (SIGTERM)"
            err_console.print(f"[bold red]stopped:[/] {how}; no output folder was changed", highlight=False)
            raise typer.Exit(code=130 if isinstance(e, KeyboardInterrupt) else 143) from None
        except Exception as e:
            if _disk_full(e):
                _fail(f"{DISK_FULL} ({one_line(str(e))})", 2)
            _fail(f"{type(e).__name__}: {one_line(str(e))} — {BUG}", 1)

    return wrapper


DISK_FULL = (
    "the disk is full; free some space, or write the output (--out) and DuckDB's spill files ([engine] "
    "temp_directory, or TMPDIR) to a disk with room"
)


def _disk_full(error: BaseException) -> bool:
    """A write that failed for want of space: an OSError saying so, or DuckDB's or Arrow's message of it."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def _fail(message: str, code: int) -> NoReturn:
    if debug_enabled():
        traceback.print_exc()
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code) from None


def debug_enabled() -> bool:
    """Whether ``--debug`` was given (or ``CUSTSEQ_DEBUG=1`` is set): tracebacks are printed."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return _debug_option["given"]


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters (DuckDB's messages run over many)."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_config(
    file: Path | None,
    columns: list[str] | None = None,
    *,
    base: RunConfig | None = None,
    **sections: dict[str, Any],
) -> RunConfig:
    """The one way every command builds its config: ``base`` (default :class:`RunConfig`'s defaults), then the
    config file, then ``--column`` mappings and the command's options, each section by name (``None`` = not
    given): ``run_config(file, window={"horizon_days": 90}, model={"encoder": {"d_model": 32}})``."""
    cfg = load_config(file, base=base) if file else (base or RunConfig())
    if columns:
        mapped = parse_mapping_items(columns)
        tables = {t: {**getattr(cfg.columns, t), **mapped[t]} for t in ("transactions", "customers", "events")}
        cfg = dataclasses.replace(cfg, columns=ColumnsConfig(**tables, detect=cfg.columns.detect))
    return apply_settings(cfg, sections)


def window_options(as_of: str | None = None, horizon: str | None = None) -> dict[str, Any]:
    """The window section of the --as-of and --horizon options."""
    return {
        "as_of": parse_date(as_of, "--as-of") if as_of else None,
        "horizon_days": parse_horizon(horizon) if horizon else None,
    }


def tables_of(data: list[str], customers: str | None, events: str | None, cfg: RunConfig) -> Tables:
    return Tables.of(data_of(data), customers=customers, events=events, columns=cfg.columns)


def data_of(items: list[str]) -> str | list[str]:
    return items[0] if len(items) == 1 else items


def items_of(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@contextlib.contextmanager
def stage(message: str) -> Iterator[None]:
    """A command's one long step on stderr: a spinner while it runs, then ``✓ message`` and its duration (plain
    lines off a terminal); the pipelines show their own stages the same way (:class:`RunProgress`)."""
    with RunProgress(console=err_console) as shown:
        shown.stage(message)
        yield


def write_report_if_enabled(folder: Path, cfg: ReportConfig) -> Path | None:
    """report.html in ``folder`` unless the config turns the report off."""
    if not cfg.enabled:
        return None
    from custseq.report import write_report

    with stage("writing the HTML report"):
        return write_report(folder, None, cfg)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"custseq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Print the traceback of an error (also: {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Churn and lifetime value, customer by customer, learned from raw event sequences."""
    _debug_option["given"] = debug
