"""`custseq evaluate`: custseq against its baselines on the same rows."""

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
    HorizonOpt,
    app,
    console,
    fails_cleanly,
    items_of,
    run_config,
    tables_of,
    window_options,
    write_report_if_enabled,
)
from custseq.cli.show import print_evaluation
from custseq.errors import ConfigError
from custseq.io.atomic import check_writable
from custseq.io.tables import Tables


@app.command("evaluate")
@fails_cleanly
def evaluate_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("custseq-evaluation"),
    horizon: HorizonOpt = None,
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    seeds: Annotated[int, typer.Option(help="Repeat the stochastic methods with seeds 0 … N-1.")] = 5,
    protocol: Annotated[
        str, typer.Option(help="temporal (test one horizon before as-of) or customer-split (70/15/15 customers).")
    ] = "temporal",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated, or 'all': custseq, hard-sharing, lstm, last-period, btyd, pareto-nbd, logistic, "
            "lightgbm, lightgbm-rich, lightgbm-mae, lightgbm-p50, lightgbm-p90, xgboost, random-forest, "
            "emb+lightgbm, cohort-smoothing."
        ),
    ] = "all",
    ablations: Annotated[
        str,
        typer.Option(
            help="Comma-separated custseq ablations: no-pretraining, fixed-weights, no-tabular, mask-30, "
            "no-next, contrastive, no-sequence; or 'all'."
        ),
    ] = "",
    label_fractions: Annotated[
        str, typer.Option(help="Label-efficiency study, e.g. 0.1,0.2,0.4,1 (shares of the training customers).")
    ] = "1",
    transfer_from: Annotated[
        Path | None, typer.Option(help="Another dataset's transactions: pre-train there, fine-tune here.")
    ] = None,
) -> None:
    """Compare custseq with its baselines, ablations and studies on the same rows, over several seeds."""
    from custseq.evaluation.methods import ABLATIONS, DEFAULT_METHODS
    from custseq.pipelines.evaluate import evaluate

    check_writable(out)
    chosen = list(DEFAULT_METHODS) if methods.strip() == "all" else items_of(methods)
    chosen_ablations = list(ABLATIONS) if ablations.strip() == "all" else items_of(ablations)
    try:
        fractions = [float(f) for f in items_of(label_fractions)]
    except ValueError:
        raise ConfigError(f"--label-fractions takes numbers like 0.1,0.4,1; got {label_fractions!r}") from None
    cfg = run_config(config, column, window=window_options(as_of, horizon))
    result = evaluate(
        tables_of(data, customers, events, cfg), cfg, protocol=protocol, seeds=list(range(seeds)), methods=chosen,
        ablations=chosen_ablations, label_fractions=fractions,
        transfer_from=Tables.of(str(transfer_from)) if transfer_from else None, out=out, progress=True,
    )  # fmt: skip
    print_evaluation(result)
    files = "evaluation.json, evaluation.md, test_predictions.parquet"
    report = write_report_if_enabled(out, cfg.report)
    console.print(f"Outputs in [bold]{out}/[/] ({files}{', ' + report.name if report else ''})")
