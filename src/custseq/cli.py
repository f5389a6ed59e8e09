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
    ReportConfig,
    RunConfig,
    apply_settings,
    load_config,
    parse_date,
    parse_horizon,
    with_seed,
)
from custseq.datasets import cdnow_path
from custseq.errors import ConfigError, CustseqError
from custseq.io.mapping import parse_mapping_items
from custseq.io.run_files import TableAccount
from custseq.io.tables import Tables
from custseq.metrics import METRICS, mean_std_text
from custseq.pipelines.prepare import PrepareResult, prepare
from custseq.version import __version__

if TYPE_CHECKING:
    from custseq.models.artifacts import Manifest
    from custseq.pipelines.outputs import PredictRun

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


def _window(as_of: str | None = None, horizon: str | None = None) -> dict[str, Any]:
    """The window section of the --as-of and --horizon options."""
    return {
        "as_of": parse_date(as_of, "--as-of") if as_of else None,
        "horizon_days": parse_horizon(horizon) if horizon else None,
    }


def _tables(data: list[str], customers: str | None, events: str | None, cfg: RunConfig) -> Tables:
    return Tables.of(_data(data), customers=customers, events=events, columns=cfg.columns)


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
    from custseq.pipelines.validate import validate

    future_rows = "quarantine" if forbid_future else None
    validation = {"max_abs_amount": max_abs_amount, "duplicates": duplicates, "future_rows": future_rows}
    cfg = run_config(config, column, window=_window(as_of), validation=validation)
    report = validate(_tables(data, customers, events, cfg), cfg, quarantine_dir=quarantine_dir)
    _print_validation(report.accounts())
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
    cfg = run_config(
        config,
        column,
        window={**_window(as_of, horizon), "stride_days": stride, "max_train_windows": windows},
        sequence={"max_events": max_events, "token": token},
    )
    with _spinner("starting") as say:
        result = prepare(_tables(data, customers, events, cfg), cfg, out, progress=say)
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
    model = {"pretraining": False if not pretraining else None}
    cfg = with_seed(run_config(config, column, window=_window(as_of, horizon), model=model), seed)
    _predict(_tables(data, customers, events, cfg), out, cfg)


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
    from custseq.pipelines.score import score

    cfg = run_config(config, column) if (config or column) else None  # None: the model's own data settings
    tables = Tables.of(_data(data), customers=customers, events=events, columns=cfg.columns if cfg else None)
    with _spinner("scoring"):
        run = score(model, tables, cfg, as_of=as_of, out=out)
    unknown = {k: v for k, v in (run.metrics.unknown_values or {}).items() if v}
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
    from custseq.evaluation.methods import ABLATIONS, DEFAULT_METHODS
    from custseq.pipelines.evaluate import evaluate

    chosen = list(DEFAULT_METHODS) if methods.strip() == "all" else _items(methods)
    chosen_ablations = list(ABLATIONS) if ablations.strip() == "all" else _items(ablations)
    try:
        fractions = [float(f) for f in _items(label_fractions)]
    except ValueError:
        raise ConfigError(f"--label-fractions takes numbers like 0.1,0.4,1; got {label_fractions!r}") from None
    cfg = run_config(config, column, window=_window(as_of, horizon))
    result = evaluate(
        _tables(data, customers, events, cfg), cfg, protocol=protocol, seeds=list(range(seeds)), methods=chosen,
        ablations=chosen_ablations, label_fractions=fractions,
        transfer_from=Tables.of(str(transfer_from)) if transfer_from else None, out=out,
        on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"),
    )  # fmt: skip
    table = Table(
        title=f"{result.protocol} back-test, test as of {result.as_of}, horizon {result.horizon_days} days, "
        f"{seeds} seed(s)"
    )
    columns = ("churn_auc", "churn_pr_auc", "churn_f1", "churn_brier", "value_gini", "value_mae", "composite",
               "seconds")  # fmt: skip
    table.add_column("method")
    for key in columns:
        table.add_column(METRICS[key].label, justify="right")
    for method, s in result.summary.items():
        table.add_row(method, *(mean_std_text(k, s.get(k)) for k in columns))
    console.print(table)
    for name, c in result.comparisons.items():
        console.print(
            f"{c.reference} vs {name}: ΔAUC {c.churn_auc_difference:+.3f} (paired t p={c.churn_auc_p:.3g}, "
            f"bootstrap p={c.auc_bootstrap.p_value:.3g}), ΔnGini {c.value_gini_difference:+.3f} "
            f"(p={c.value_gini_p:.3g})"
        )
    for name, why in result.skipped.items():
        console.print(f"  [dim]note:[/] {name} was not run: {why}")
    files = "evaluation.json, evaluation.md, test_predictions.parquet"
    report = _write_report(out, cfg.report)
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
    from custseq.pipelines.plan import replan

    changes = {"catalogue": str(catalogue) if catalogue else None, "retention_threshold": threshold, "mode": mode,
               "k": k}  # fmt: skip
    cfg = run_config(config, actions=changes)
    actions = cfg.actions
    planned = replan(folder, actions, out)
    target = out or folder
    flagged = int(planned["retention_flag"].sum())
    console.print(
        f"[bold]{len(planned):,}[/] plans: {flagged:,} customers with churn above {actions.retention_threshold:g} "
        f"get retention actions ({actions.mode}), the rest the next-event model's items and growth actions"
    )
    if (folder / "report.html").exists():
        _write_report(target, cfg.report)
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
    cfg = run_config(config, report={"interactive": interactive}).report
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
    cfg = with_seed(run_config(config, window=_window(horizon=horizon)), seed)
    _predict(Tables.of(cdnow_path(), columns=cfg.columns), out, cfg)


def _write_report(folder: Path, cfg: ReportConfig) -> Path | None:
    """report.html in ``folder`` unless the config turns the report off."""
    if not cfg.enabled:
        return None
    from custseq.report import write_report

    with _spinner("writing the HTML report"):
        return write_report(folder, None, cfg)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _predict(tables: Tables, out: Path, cfg: RunConfig) -> None:
    from custseq.pipelines.predict import predict  # torch is imported only by the commands that need it

    # Stages as lines, so the training loop can show its own progress bars (epoch, loss, customers/s).
    run = predict(tables, cfg, out=out, progress=True, on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"))
    m = run.metrics
    _print_validation(m.tables)
    if m.validation is not None:
        v = m.validation
        console.print(
            f"trained on windows {', '.join(m.training_windows or ())} "
            f"({'pre-trained encoder' if m.pretrained else 'no pre-training'}); validation: "
            f"churn AUC {v.churn_auc:.3f}, value nGini {v.value_gini:.3f}, Brier "
            f"{v.churn_brier_before:.3f} -> {v.churn_brier_after:.3f} after {m.calibration} calibration"
        )
    if m.backtest is not None:
        console.print(
            f"back-test (the horizon after {run.as_of} is in the data): churn AUC {m.backtest.churn_auc:.3f}, "
            f"value nGini {m.backtest.value_gini:.3f}"
        )
    _print_scores(run)


def _print_scores(run: PredictRun) -> None:
    p = run.predictions
    h = run.metrics.horizon_days
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
    segments = ", ".join(f"{n:,} {str(name).replace('_', ' ')}" for name, n in p["segment"].value_counts().items())
    console.print(f"segments: {segments}")
    console.print(
        f"{int(p['retention_flag'].sum()):,} customers flagged for retention actions (churn above "
        f"{run.data_config.actions.retention_threshold:g}); {int((p['contact_profit'] > 0).sum()):,} worth a "
        f"retention contact under the \\[profit] assumptions; {run.metrics.review_customers:,} listed in "
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
    epochs: Annotated[
        int | None, typer.Option(help="At most this many epochs (early stopping may end sooner; default 30).")
    ] = None,
    objectives: Annotated[
        str | None, typer.Option(help="Comma-separated: masked, next, contrastive (default masked,next).")
    ] = None,
    mask_rate: Annotated[
        float | None, typer.Option(help="Share of events masked (0.15 SeqPreMT, 0.3 CASPR; default 0.15).")
    ] = None,
    mask_style: Annotated[
        str | None, typer.Option(help="token ([MASK] vector) or zero (CASPR; default token).")
    ] = None,
    d_model: Annotated[int | None, typer.Option(help="Width of the encoder (default 64).")] = None,
    layers: Annotated[int | None, typer.Option(help="Transformer layers (default 2).")] = None,
    max_events: Annotated[
        int | None, typer.Option(help="Last L events the encoder reads per customer (default 64).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Customers per batch, per process (default 256).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice (default 0).")] = None,
    nproc: Annotated[int, typer.Option(help="Processes for distributed data parallel training (torchrun).")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in the work folder.")] = False,
) -> None:
    """Pre-train the sequence encoder self-supervised (masked events + next event) and save it."""
    from custseq.pipelines.pretrain import (  # torch is imported only by the commands that need it
        PRETRAIN_DEFAULTS,
        pretrain,
    )

    encoder = {
        "d_model": d_model,
        "d_ff": 2 * d_model if d_model else None,
        "n_layers": layers,
        "max_events": max_events,
    }
    names = tuple(o.strip() for o in objectives.split(",") if o.strip()) if objectives else None
    model = {
        "encoder": encoder,
        "pretrain": {"objectives": names, "mask_rate": mask_rate, "mask_style": mask_style},
        "pretrain_training": {"epochs": epochs, "batch_size": batch_size, "seed": seed},
    }
    cfg = run_config(config, column, base=PRETRAIN_DEFAULTS, window=_window(as_of, horizon), model=model)
    run = pretrain(
        _tables(data, customers, events, cfg), cfg, out, nproc=nproc, resume=resume, progress=True,
        on_stage=lambda msg: console.print(f"[dim]{msg}…[/]"),
    )  # fmt: skip
    if run.manifest is not None:  # None only on torchrun ranks other than 0
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
    from custseq.pipelines.pretrain import embed_customers

    cfg = run_config(config, column, window=_window(as_of))
    table, scoring = embed_customers(model, _tables(data, customers, events, cfg), cfg, out)
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


def _print_validation(tables: dict[str, TableAccount]) -> None:
    for name, t in tables.items():
        mapping = Table(title=f"{name}: columns", title_justify="left")
        for col in ("role", "source column", "how"):
            mapping.add_column(col)
        for m in t.mapping:
            mapping.add_row(m.column, m.source, m.how)
        for extra, kind in t.extras.items():
            mapping.add_row(extra, "(extra)", kind)
        console.print(mapping)
        account = f"{t.rows_in:,} rows in = {t.rows_used:,} used + {t.rows_quarantined:,} quarantined"
        rules = Table(title=f"{name}: {account}", title_justify="left")
        for col in ("rule", "rows", "action", "reason"):
            rules.add_column(col)
        for rule, hit in t.quarantined_by_rule.items():
            rules.add_row(rule, f"{hit.rows:,}", "quarantined", hit.reason)
        for rule, hit in t.flagged_by_rule.items():
            rules.add_row(rule, f"{hit.rows:,}", "kept, flagged", hit.reason)
        if rules.row_count:
            console.print(rules)
        else:
            console.print(f"[bold]{name}[/]: {t.rows_in:,} rows, all passed validation")
        for note in t.notes:
            console.print(f"  [dim]note:[/] {note}", highlight=False)


def _print_prepare(result: PrepareResult) -> None:
    s = result.summary
    _print_validation(s.tables)
    windows = Table(title=f"windows (horizon {s.horizon_days} days, as of {s.as_of})", title_justify="left")
    for col in ("as of", "role", "customers", "churn rate", "value in horizon"):
        windows.add_column(col, justify="right" if col != "role" else "left")
    for w in s.windows:
        churn = f"{w.churn_rate:.1%}" if w.churn_rate is not None else "—"
        value = f"{w.total_value:,.0f}" if w.total_value is not None else "—"
        windows.add_row(w.as_of, w.role, f"{w.customers:,}", churn, value)
    console.print(windows)
    seq = s.sequence
    fields = ", ".join([*(f"{k} ({v} ids)" for k, v in seq.categorical_fields.items()), *seq.numeric_fields])
    console.print(f"sequences: one token per {seq.token}, last {seq.max_events} events; fields: {fields}")
    console.print(f"Outputs in [bold]{result.out_dir}/[/] (prepare.json, vocab.json, windows/, quarantine/)")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="custseq")


if __name__ == "__main__":
    main()
