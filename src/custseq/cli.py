"""The ``custseq`` command line: parse options, call one library function, format its result."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from custseq.config import (
    ColumnsConfig,
    EncoderConfig,
    PretrainConfig,
    ReportConfig,
    RunConfig,
    TrainConfig,
    load_config,
    parse_date,
    parse_horizon,
)
from custseq.datasets import cdnow_path
from custseq.errors import ConfigError, CustseqError
from custseq.io.mapping import parse_mapping_items
from custseq.prepare import PrepareResult, prepare, validate
from custseq.version import __version__

if TYPE_CHECKING:
    from custseq.models.artifacts import Manifest

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
HorizonOpt = Annotated[str | None, typer.Option(help="Prediction horizon, e.g. 90d, 13w, 6m (default 90d).")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Inclusive scoring date YYYY-MM-DD (default: last day in the data).")
]


def _fails_cleanly(fn: Callable[..., None]) -> Callable[..., None]:
    """Turn a CustseqError into one red line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except CustseqError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _config(
    config: Path | None,
    columns: list[str] | None,
    *,
    as_of: str | None = None,
    horizon: str | None = None,
    **overrides: Any,
) -> RunConfig:
    """The config file (or defaults) with command-line options applied on top."""
    cfg = load_config(config) if config else RunConfig()
    if columns:
        mapped = parse_mapping_items(columns)
        cfg = dataclasses.replace(
            cfg,
            columns=ColumnsConfig(
                **{t: {**getattr(cfg.columns, t), **mapped[t]} for t in ("transactions", "customers", "events")},
                detect=cfg.columns.detect,
            ),
        )
    window = cfg.window
    if as_of:
        window = dataclasses.replace(window, as_of=parse_date(as_of, "--as-of"))
    if horizon:
        window = dataclasses.replace(window, horizon_days=parse_horizon(horizon))
    sections: dict[str, dict[str, Any]] = {"window": {}, "validation": {}, "sequence": {}}
    for key, value in overrides.items():
        if value is not None:
            section, name = key.split("__")
            sections[section][name] = value
    return dataclasses.replace(
        cfg,
        window=dataclasses.replace(window, **sections["window"]),
        validation=dataclasses.replace(cfg.validation, **sections["validation"]),
        sequence=dataclasses.replace(cfg.sequence, **sections["sequence"]),
    )


def _print_version(value: bool) -> None:
    if value:
        console.print(f"custseq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Churn and lifetime value, customer by customer, learned from raw event sequences."""


@app.command("validate")
@_fails_cleanly
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
) -> None:
    """Check tables against the data contract: columns, mapping, rule hits; write rejected rows."""
    cfg = _config(
        config,
        column,
        validation__max_abs_amount=max_abs_amount,
        validation__duplicates=duplicates,
        validation__future_rows="quarantine" if forbid_future else None,
    )
    report = validate(
        _data(data), customers=customers, events=events, as_of=as_of, config=cfg, quarantine_dir=quarantine_dir
    )
    _print_validation(report.to_dict())
    console.print(f"Quarantined rows, with reasons: [bold]{quarantine_dir}/[/]")


@app.command("prepare")
@_fails_cleanly
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
) -> None:
    """Build leakage-safe windows, labels, RFM features and event sequences on disk."""
    cfg = _config(
        config,
        column,
        as_of=as_of,
        horizon=horizon,
        window__stride_days=stride,
        window__max_train_windows=windows,
        sequence__max_events=max_events,
        sequence__token=token,
    )
    result = _prepare_with_progress(_data(data), out, cfg, customers=customers, events=events)
    _print_prepare(result)


@app.command("predict")
@_fails_cleanly
def predict_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("custseq-output"),
    horizon: HorizonOpt = None,
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice (default: the config's, 0).")] = None,
    pretraining: Annotated[bool, typer.Option(help="Pre-train the encoder self-supervised first.")] = True,
) -> None:
    """Train on the past and score every customer: churn probability and value over the horizon."""
    cfg = _config(config, column, as_of=as_of, horizon=horizon)
    if not pretraining:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretraining=False))
    _predict(_data(data), out, cfg, seed, customers=customers, events=events)


@app.command("score")
@_fails_cleanly
def score_cmd(
    data: DataArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by predict (<out>/model).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("custseq-scores"),
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Score new data with a saved model (its columns, vocabularies and horizon)."""
    from custseq.scoring.predict import score

    cfg = _config(config, column) if (config or column) else None
    with _spinner("scoring"):
        run = score(model, _data(data), as_of=as_of, customers=customers, events=events, config=cfg, out=out)
    unknown = {k: v for k, v in run.metrics["unknown_values"].items() if v}
    if unknown:
        console.print(f"  [dim]note:[/] values the model has not seen (mapped to the unknown id): {unknown}")
    _print_scores(run)


@app.command("evaluate")
@_fails_cleanly
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
            "lightgbm, lightgbm-mae, lightgbm-p50, lightgbm-p90, xgboost, random-forest, emb+lightgbm, "
            "cohort-smoothing."
        ),
    ] = "all",
    ablations: Annotated[
        str,
        typer.Option(
            help="Comma-separated custseq ablations: no-pretraining, fixed-weights, no-tabular, mask-30, "
            "no-next, contrastive; or 'all'."
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
    from custseq.evaluation.backtest import evaluate
    from custseq.evaluation.methods import ABLATIONS, DEFAULT_METHODS

    chosen = list(DEFAULT_METHODS) if methods.strip() == "all" else _items(methods)
    chosen_ablations = list(ABLATIONS) if ablations.strip() == "all" else _items(ablations)
    try:
        fractions = [float(f) for f in _items(label_fractions)]
    except ValueError:
        raise ConfigError(f"--label-fractions takes numbers like 0.1,0.4,1; got {label_fractions!r}") from None
    result = evaluate(
        _data(data), horizon=horizon, as_of=as_of, customers=customers, events=events,
        config=_config(config, column), protocol=protocol, seeds=list(range(seeds)), methods=chosen,
        ablations=chosen_ablations, label_fractions=fractions,
        transfer_from=str(transfer_from) if transfer_from else None, out=out,
        on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"),
    )  # fmt: skip
    table = Table(
        title=f"{result.protocol} back-test, test as of {result.as_of}, horizon {result.horizon_days} days, "
        f"{seeds} seed(s)"
    )
    columns = {"churn_auc": "churn AUC", "churn_pr_auc": "PR AUC", "churn_f1": "F1", "churn_brier": "Brier",
               "value_gini": "nGini", "value_mae": "value MAE", "composite": "composite",
               "seconds": "seconds"}  # fmt: skip
    table.add_column("method")
    for title in columns.values():
        table.add_column(title, justify="right")
    for method, s in result.summary().items():
        table.add_row(method, *(f"{s[k][0]:.3f} ± {s[k][1]:.3f}" if k in s else "–" for k in columns))
    console.print(table)
    for name, c in result.comparisons.items():
        console.print(
            f"{c['reference']} vs {name}: ΔAUC {c['churn_auc_difference']:+.3f} (paired t p={c['churn_auc_p']:.3g}, "
            f"bootstrap p={c['auc_bootstrap']['p_value']:.3g}), ΔnGini {c['value_gini_difference']:+.3f} "
            f"(p={c['value_gini_p']:.3g})"
        )
    for name, why in result.skipped.items():
        console.print(f"  [dim]note:[/] {name} was not run: {why}")
    files = "evaluation.json, evaluation.md, test_predictions.parquet"
    report = _write_report(out, _config(config, column).report)
    console.print(f"Outputs in [bold]{out}/[/] ({files}{', ' + report.name if report else ''})")


@app.command("plan")
@_fails_cleanly
def plan_cmd(
    folder: Annotated[Path, typer.Argument(help="Output folder of predict or score (with predictions.parquet).")],
    catalogue: Annotated[
        Path | None, typer.Option(help="Action catalogue (JSON or YAML); default: the config's, else the shipped one.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Churn probability above which plans switch to retention actions.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="replace (retention actions only) or augment.")] = None,
    k: Annotated[int | None, typer.Option(help="Actions per customer.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: FOLDER).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Re-plan saved predictions with another catalogue, threshold or mode (no model needed)."""
    from custseq.scoring.predict import replan

    actions = _config(config, None).actions
    changes = {
        "catalogue": str(catalogue) if catalogue else None,
        "retention_threshold": threshold,
        "mode": mode,
        "k": k,
    }
    actions = dataclasses.replace(actions, **{name: v for name, v in changes.items() if v is not None})
    planned = replan(folder, actions, out)
    target = out or folder
    flagged = int(planned["retention_flag"].sum())
    console.print(
        f"[bold]{len(planned):,}[/] plans: {flagged:,} customers with churn above {actions.retention_threshold:g} "
        f"get retention actions ({actions.mode}), the rest the next-event model's items and growth actions"
    )
    if (folder / "report.html").exists():
        _write_report(target, _config(config, None).report)
    console.print(f"Outputs in [bold]{target}/[/] (predictions.parquet/.csv, metrics.json)")


@app.command("report")
@_fails_cleanly
def report_cmd(
    folder: Annotated[Path, typer.Argument(help="Output folder of predict, score or evaluate.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default: FOLDER/report.html).")] = None,
    config: ConfigOpt = None,
    interactive: Annotated[
        bool, typer.Option(help="Inline Plotly (about 5 MB) for interactive figures; static SVG figures either way.")
    ] = True,
) -> None:
    """Write the self-contained HTML report of an output folder (opens without a network)."""
    from custseq.report import write_report

    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass the --out folder of predict, score or evaluate")
    cfg = dataclasses.replace(_config(config, None).report, interactive=interactive)
    path = write_report(folder, out, cfg)
    console.print(f"Report in [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB)")


@app.command("demo")
@_fails_cleanly
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    horizon: Annotated[str, typer.Option(help="Prediction horizon.")] = "90d",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Predict churn and value for the bundled CDNOW data (23,570 customers, 1997–1998)."""
    console.print(f"custseq {__version__} demo: CDNOW master data (Fader & Hardie), horizon {horizon}")
    _predict(cdnow_path(), out, _config(config, None, horizon=horizon), seed)


def _write_report(folder: Path, cfg: ReportConfig) -> Path | None:
    """report.html in ``folder`` unless the config turns the report off."""
    if not cfg.enabled:
        return None
    from custseq.report import write_report

    with _spinner("writing the HTML report"):
        return write_report(folder, None, cfg)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _predict(data: Any, out: Path, cfg: RunConfig, seed: int | None, **tables: Any) -> None:
    from custseq.scoring.predict import run_predict  # torch is imported only by the commands that need it

    # Stages as lines, so the training loop can show its own progress bars (epoch, loss, customers/s).
    run = run_predict(
        data, config=cfg, seed=seed, out=out, progress=True, on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"),
        **tables,
    )  # fmt: skip
    _print_validation(run.metrics["tables"])
    v = run.metrics["validation"]
    console.print(
        f"trained on windows {', '.join(run.metrics['training_windows'])} "
        f"({'pre-trained encoder' if run.metrics['pretrained'] else 'no pre-training'}); validation: "
        f"churn AUC {v['churn_auc']:.3f}, value nGini {v['value_gini']:.3f}, Brier "
        f"{v['churn_brier_before']:.3f} -> {v['churn_brier_after']:.3f} after {run.metrics['calibration']} calibration"
    )
    if "backtest" in run.metrics:
        b = run.metrics["backtest"]
        console.print(
            f"back-test (the horizon after {run.as_of} is in the data): churn AUC {b['churn_auc']:.3f}, "
            f"value nGini {b['value_gini']:.3f}"
        )
    _print_scores(run)


def _print_scores(run: Any) -> None:
    p = run.predictions
    h = run.metrics["horizon_days"]
    console.print(
        f"[bold]{len(p):,}[/] customers scored as of {run.as_of} for the next {h} days: expected churn rate "
        f"{p['churn_probability'].mean():.1%}, total expected value {p['clv_expected'].sum():,.0f}"
    )
    valuable = p[p["clv_expected"] >= p["clv_expected"].quantile(0.75)]
    top = Table(title="highest churn risk among the top 25% by expected value", title_justify="left")
    for col in ("customer", "churn probability", "expected value", "P10 – P90"):
        top.add_column(col, justify="left" if col == "customer" else "right")
    for r in valuable.sort_values(["churn_probability", "clv_expected"], ascending=False).head(5).itertuples():
        top.add_row(
            str(r.customer_id), f"{r.churn_probability:.1%}", f"{r.clv_expected:,.2f}",
            f"{r.clv_p10:,.2f} – {r.clv_p90:,.2f}",
        )  # fmt: skip
    console.print(top)
    segments = ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in p["segment"].value_counts().items())
    console.print(f"segments: {segments}")
    console.print(
        f"{int(p['retention_flag'].sum()):,} customers flagged for retention actions (churn above "
        f"{run.data_config.actions.retention_threshold:g}); {int((p['contact_profit'] > 0).sum()):,} worth a "
        f"retention contact under the \\[profit] assumptions; {run.metrics.get('review_customers', 0):,} listed in "
        "review.csv for a human look"
    )
    if run.out_dir is not None:
        report = _write_report(run.out_dir, run.data_config.report)
        files = "predictions.parquet/.csv, embeddings.parquet, metrics.json, review.csv, quarantine/"
        files += ", model/" if (run.out_dir / "model").exists() else ""
        files += f", {report.name}" if report else ""
        console.print(f"Outputs in [bold]{run.out_dir}/[/] ({files})")


@app.command("pretrain")
@_fails_cleanly
def pretrain_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    as_of: AsOfOpt = None,
    horizon: Annotated[str | None, typer.Option(help="Horizon of the training windows (default 90d).")] = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    epochs: Annotated[int, typer.Option(help="At most this many epochs (early stopping may end sooner).")] = 30,
    objectives: Annotated[str, typer.Option(help="Comma-separated: masked, next, contrastive.")] = "masked,next",
    mask_rate: Annotated[float, typer.Option(help="Share of events masked (0.15 SeqPreMT, 0.3 CASPR).")] = 0.15,
    mask_style: Annotated[str, typer.Option(help="token ([MASK] vector) or zero (CASPR).")] = "token",
    d_model: Annotated[int, typer.Option(help="Width of the encoder.")] = 64,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 2,
    max_events: Annotated[int, typer.Option(help="Last L events the encoder reads per customer.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Customers per batch (per process).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    nproc: Annotated[int, typer.Option(help="Processes for distributed data parallel training (torchrun).")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in the work folder.")] = False,
) -> None:
    """Pre-train the sequence encoder self-supervised (masked events + next event) and save it."""
    from custseq.models.pretrain import pretrain  # torch is imported only by the commands that need it

    run = pretrain(
        _data(data),
        out=out,
        customers=customers,
        events=events,
        config=_config(config, column, as_of=as_of, horizon=horizon),
        encoder=EncoderConfig(d_model=d_model, n_layers=layers, d_ff=2 * d_model, max_events=max_events),
        objectives=PretrainConfig(
            objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()),
            mask_rate=mask_rate,
            mask_style=mask_style,
        ),
        training=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        nproc=nproc,
        resume=resume,
        progress=True,
        on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"),
    )
    _print_pretrain(run.manifest, out)


@app.command("embed")
@_fails_cleanly
def embed_cmd(
    data: DataArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by `custseq pretrain`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file: customer_id, e0 … e{D-1}.")] = Path(
        "embeddings.parquet"
    ),
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Customer embeddings as of a date, from a pre-trained encoder."""
    from custseq.models.pretrain import embed_with_model

    cfg = _config(config, column)
    table, scoring = embed_with_model(
        model, _data(data), out=out, customers=customers, events=events, as_of=as_of, config=cfg
    )
    unknown = {k: v for k, v in scoring.unknown_values.items() if v}
    console.print(
        f"{table.num_rows:,} customers embedded as of {scoring.window.as_of} "
        f"({table.num_columns - 1} dimensions) -> [bold]{out}[/]"
    )
    if unknown:
        console.print(f"  [dim]note:[/] values the model has not seen (mapped to the unknown id): {unknown}")


def _print_pretrain(manifest: Manifest, out: Path) -> None:
    metrics = manifest.metrics
    console.print(
        f"pre-trained on windows {', '.join(manifest.cutoffs)}; best validation loss "
        f"{metrics['best_val_loss']:.4f} at epoch {int(metrics['best_epoch'])}"
    )
    console.print(f"Model in [bold]{out}/[/] (config.json, vocab.json, model.safetensors, manifest.json)")


def _data(items: list[str]) -> str | list[str]:
    return items[0] if len(items) == 1 else items


@contextlib.contextmanager
def _spinner(first: str) -> Iterator[Callable[[str], None]]:
    """A transient spinner; the yielded function changes its text as each stage starts."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(first, total=None)
        yield lambda msg: bar.update(task, description=msg)


def _prepare_with_progress(data: Any, out: Path, cfg: RunConfig, **tables: Any) -> PrepareResult:
    with _spinner("starting") as say:
        return prepare(data, out=out, config=cfg, progress=say, **tables)


def _print_validation(tables: dict[str, Any]) -> None:
    for name, t in tables.items():
        mapping = Table(title=f"{name}: columns", title_justify="left")
        for col in ("role", "source column", "how"):
            mapping.add_column(col)
        for m in t["mapping"]:
            mapping.add_row(m["column"], m["source"], m["how"])
        for extra, kind in t["extras"].items():
            mapping.add_row(extra, "(extra)", kind)
        console.print(mapping)
        account = f"{t['rows_in']:,} rows in = {t['rows_used']:,} used + {t['rows_quarantined']:,} quarantined"
        rules = Table(title=f"{name}: {account}", title_justify="left")
        for col in ("rule", "rows", "action", "reason"):
            rules.add_column(col)
        for rule, hit in t["quarantined_by_rule"].items():
            rules.add_row(rule, f"{hit['rows']:,}", "quarantined", hit["reason"])
        for rule, hit in t["flagged_by_rule"].items():
            rules.add_row(rule, f"{hit['rows']:,}", "kept, flagged", hit["reason"])
        if rules.row_count:
            console.print(rules)
        else:
            console.print(f"[bold]{name}[/]: {t['rows_in']:,} rows, all passed validation")
        for note in t["notes"]:
            console.print(f"  [dim]note:[/] {note}", highlight=False)


def _print_prepare(result: PrepareResult) -> None:
    s = result.summary
    _print_validation(s["tables"])
    windows = Table(title=f"windows (horizon {s['horizon_days']} days, as of {s['as_of']})", title_justify="left")
    for col in ("as of", "role", "customers", "churn rate", "value in horizon"):
        windows.add_column(col, justify="right" if col != "role" else "left")
    for w in s["windows"]:
        churn = f"{w['churn_rate']:.1%}" if "churn_rate" in w else "—"
        value = f"{w['total_value']:,.0f}" if "total_value" in w else "—"
        windows.add_row(w["as_of"], w["role"], f"{w['customers']:,}", churn, value)
    console.print(windows)
    seq = s["sequence"]
    fields = ", ".join([*(f"{k} ({v} ids)" for k, v in seq["categorical_fields"].items()), *seq["numeric_fields"]])
    console.print(f"sequences: one token per {seq['token']}, last {seq['max_events']} events; fields: {fields}")
    console.print(f"Outputs in [bold]{result.out_dir}/[/] (prepare.json, vocab.json, windows/, quarantine/)")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="custseq")


if __name__ == "__main__":
    main()
