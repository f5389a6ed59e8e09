"""`custseq validate` and `custseq prepare`: the data, checked and turned into windows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custseq.cli.app import (
    AsOfOpt,
    ColumnOpt,
    ConfigOpt,
    CustomersOpt,
    DataArg,
    EventsOpt,
    app,
    console,
    data_of,
    err_console,
    fails_cleanly,
    run_config,
    tables_of,
    window_options,
)
from custseq.cli.columns import explain, print_columns
from custseq.cli.show import print_prepare, print_validation
from custseq.config import RunConfig
from custseq.io.atomic import check_writable
from custseq.io.tables import Tables
from custseq.pipelines.prepare import prepare
from custseq.progress import RunProgress

EngineOpt = Annotated[
    str | None,
    typer.Option(help="Preparation engine: duckdb (default, this machine) or spark (needs custseq[spark] and Java)."),
]
SparkMasterOpt = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="Spark master URL with --engine spark (local[4], spark://host:7077, yarn; default the active session, "
        "else local[*]). Tables of its catalog are read as table:NAME.",
    ),
]


def engine_tables(data: list[str], customers: str | None, events: str | None, cfg: RunConfig) -> Tables:
    """The tables to read: ``table:NAME`` names a table of the Spark catalog on the Spark engine."""
    if cfg.engine.name != "spark":
        return tables_of(data, customers, events, cfg)
    from custseq.spark.read import spark_tables

    return spark_tables(data_of(data), customers=customers, events=events, columns=cfg.columns)


@app.command("validate")
@fails_cleanly
def validate_cmd(
    data: DataArg,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    forbid_future: Annotated[
        bool, typer.Option("--forbid-future", help="Quarantine rows after --as-of (they must not exist).")
    ] = False,
    max_abs_amount: Annotated[float | None, typer.Option(help="Quarantine |amount| above this.")] = None,
    duplicates: Annotated[str | None, typer.Option(help="Exact duplicate rows: auto, quarantine or keep.")] = None,
    quarantine_dir: Annotated[
        Path, typer.Option("--quarantine-dir", help="Where rejected rows are written with their reasons.")
    ] = Path("quarantine"),
    explain_columns: Annotated[
        bool, typer.Option("--explain", help="First print every column role and how it is filled (custseq columns).")
    ] = False,
) -> None:
    """Check tables against the data contract: columns, mapping, rule hits; write rejected rows."""
    from custseq.pipelines.validate import validate

    check_writable(quarantine_dir, "--quarantine-dir")
    future_rows = "quarantine" if forbid_future else None
    validation = {"max_abs_amount": max_abs_amount, "duplicates": duplicates, "future_rows": future_rows}
    cfg = run_config(config, column, window=window_options(as_of), validation=validation)
    if explain_columns:
        print_columns(explain(data, customers, events, cfg))
    report = validate(tables_of(data, customers, events, cfg), cfg, quarantine_dir=quarantine_dir)
    print_validation(report.accounts())
    console.print(f"Quarantined rows, with reasons: [bold]{quarantine_dir}/[/]")


@app.command("prepare")
@fails_cleanly
def prepare_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    horizon: Annotated[
        str | None, typer.Option(help="Prediction horizon: 90d, 13w, 6m, 1y or days (default 90d).")
    ] = None,
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    stride: Annotated[int | None, typer.Option(help="Days between training cutoffs (default: horizon).")] = None,
    windows: Annotated[int | None, typer.Option(help="At most this many training windows.")] = None,
    max_events: Annotated[int | None, typer.Option(help="Last L events kept per customer.")] = None,
    token: Annotated[str | None, typer.Option(help="Sequence token: auto, order or line.")] = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
) -> None:
    """Build leakage-safe windows, labels, RFM features and event sequences on disk."""
    check_writable(out)
    cfg = run_config(
        config,
        column,
        window={**window_options(as_of, horizon), "stride_days": stride, "max_train_windows": windows},
        sequence={"max_events": max_events, "token": token},
        engine={"name": engine, "spark_master": spark_master},
    )
    with RunProgress(console=err_console, notes=False) as shown:  # print_prepare prints the notes
        result = prepare(engine_tables(data, customers, events, cfg), cfg, out, progress=shown.stage)
    print_prepare(result)
