"""`custseq fit-head`: a model of the user's own per-customer label on custseq's embeddings (and features)."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from custseq.cli.app import (
    ColumnOpt,
    ConfigOpt,
    CustomersOpt,
    DataArg,
    EventsOpt,
    app,
    console,
    data_of,
    fails_cleanly,
    run_config,
    stage,
)
from custseq.config import parse_date
from custseq.io.atomic import check_writable
from custseq.io.tables import Tables

if TYPE_CHECKING:
    from custseq.downstream.head import FittedHead


class HeadTask(StrEnum):
    classification = "classification"
    regression = "regression"


@app.command("fit-head")
@fails_cleanly
def fit_head_cmd(
    data: DataArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by predict (<out>/model).")],
    labels: Annotated[Path, typer.Option(help="CSV or Parquet: customer_id and the label (one row per customer).")],
    task: Annotated[HeadTask, typer.Option(help="classification (classes: 0/1, yes/no, names) or regression.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Head folder to write.")],
    label_column: Annotated[
        str | None, typer.Option(help="The label's column (default: the only column besides customer_id).")
    ] = None,
    with_features: Annotated[
        bool, typer.Option(help="The head reads custseq's rich features next to the embeddings.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The date the labels refer to, YYYY-MM-DD: embeddings and features read rows up to the end of that "
            "day only (default: the last day in the data).",
        ),
    ] = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    folds: Annotated[int, typer.Option(help="Customer-level K-fold of the cross-validated metrics.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and of LightGBM.")] = 0,
) -> None:
    """Learn a per-customer label (fraud, upsell, affinity…) from the embeddings as of the labels' date.

    The head is compared in a K-fold with the features alone and a trivial baseline, then saved.

    `custseq score --head DIR` applies it.
    """
    from custseq.config.downstream import HeadConfig
    from custseq.downstream.fit import fit_head

    check_writable(out)
    cfg = HeadConfig(task=task.value, with_features=with_features, folds=folds, min_per_class=max(5, folds),
                     min_labels=max(20, folds), seed=seed)  # fmt: skip
    data_cfg = run_config(config, column) if (config or column) else None  # None: the model's own data settings
    columns = data_cfg.columns if data_cfg else None
    tables = Tables.of(data_of(data), customers=customers, events=events, columns=columns)
    date = parse_date(as_of, "--as-of") if as_of else None
    with stage(f"fitting a {task.value} head on {labels.name}"):
        head = fit_head(
            model, tables, labels, cfg, label_column=label_column, as_of=date, data_config=data_cfg, out=out
        )
    print_head(head, out)


def print_head(head: FittedHead, out: Path) -> None:
    """The counts, the cross-validated comparison and where the head went."""
    c = head.counts
    console.print(
        f"{c['used_customers']:,} labelled customers with history up to {head.as_of} "
        f"({head.kind}, {head.config.folds}-fold cross-validation)"
    )
    if c["unknown_customers"] or c["rows_without_label"]:
        console.print(
            f"  [dim]note:[/] {c['unknown_customers']:,} labelled customers have no transaction up to {head.as_of} "
            f"and {c['rows_without_label']:,} rows have no label: not used",
            highlight=False,
        )
    metrics = next(iter(head.metrics.values()))
    names = [m for m in metrics if not m.endswith("_std")]
    table = Table(title=f"{head.column}: cross-validated, mean ± std over folds", title_justify="left")
    table.add_column("inputs")
    for name in names:
        table.add_column(name.replace("_", " "), justify="right")
    for candidate, values in head.metrics.items():
        table.add_row(candidate, *(_mean_std(values[m], values[f"{m}_std"]) for m in names))
    console.print(table)
    console.print(f"head saved to [bold]{out}[/] — apply it with `custseq score DATA --model … --head {out}`")


def _mean_std(mean: float, std: float) -> str:
    return "—" if math.isnan(mean) else f"{mean:,.3f} ± {std:,.3f}"
