"""`custseq predict`, `score`, `pretrain`, `embed` and `demo`: training and applying the models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custseq.cli.app import (
    AsOfOpt,
    CatalogueOpt,
    ColumnOpt,
    ConfigOpt,
    CustomersOpt,
    DataArg,
    EventsOpt,
    HorizonOpt,
    ProductsOpt,
    app,
    console,
    data_of,
    fails_cleanly,
    run_config,
    stage,
    tables_of,
    window_options,
    write_report_if_enabled,
)
from custseq.cli.data import EngineOpt, SparkMasterOpt, engine_tables
from custseq.cli.show import (
    print_outputs,
    print_pretrain,
    print_scores,
    print_training,
    print_validation,
)
from custseq.config import (
    RunConfig,
    with_seed,
)
from custseq.datasets import cdnow_path
from custseq.errors import ConfigError
from custseq.io.atomic import check_writable, work_folder_beside
from custseq.io.tables import Tables
from custseq.pipelines.nodes import Nodes
from custseq.version import __version__

NnodesOpt = Annotated[
    int, typer.Option(help="Machines that train together (with --rendezvous; the others run `custseq join`).")
]
RendezvousOpt = Annotated[
    str | None, typer.Option(help="HOST:PORT of the head machine's rendezvous, when --nnodes is 2 or more.")
]

if TYPE_CHECKING:
    from custseq.pipelines.outputs import PredictRun


@app.command("predict")
@fails_cleanly
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
    catalogue: CatalogueOpt = None,
    products: ProductsOpt = None,
    decisions_history: Annotated[
        list[Path] | None,
        typer.Option(help="decisions.csv of an earlier `plan --decisions` (repeatable): measured against outcomes."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue a run into --out that stopped before its end (killed, interrupted, failed) from its last "
            "finished stage, kept in <out>.work; refused if the data or settings changed since."
        ),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(help="Processes (per machine) for distributed data parallel pre-training and fine-tuning."),
    ] = 1,
    nnodes: NnodesOpt = 1,
    rendezvous: RendezvousOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
) -> None:
    """Train on the past and score every customer: churn probability and value over the horizon."""
    nodes = Nodes(nnodes, rendezvous)
    check_writable(out, replaces=True)
    model = {"pretraining": False if not pretraining else None}
    window, actions = window_options(as_of, horizon), {"catalogue": catalogue, "products": products}
    audit = {"decisions_history": tuple(map(str, decisions_history)) if decisions_history else None}
    engines = {"name": engine, "spark_master": spark_master}
    cfg = run_config(config, column, window=window, model=model, actions=actions, audit=audit, engine=engines)
    cfg = with_seed(cfg, seed)
    tables = engine_tables(data, customers, events, cfg)
    predict_and_print(tables, out, cfg, resume=resume, nproc=nproc, nodes=nodes)


@app.command("join")
@fails_cleanly
def join_cmd(
    out: Annotated[Path, typer.Argument(help="The --out of the head's `custseq predict` (on a shared file system).")],
    nproc: Annotated[int, typer.Option(help="Processes on this machine (the head's --nproc).")] = 1,
    nnodes: NnodesOpt = 2,
    rendezvous: RendezvousOpt = None,
    wait: Annotated[
        float | None, typer.Option(help="Seconds to wait for the head to announce its training (default: no limit).")
    ] = None,
) -> None:
    """Lend this machine's processes to a `custseq predict --nnodes N` running on another machine."""
    from custseq.pipelines.finetune_worker import launch_torchrun
    from custseq.pipelines.nodes import join

    nodes = Nodes(nnodes, rendezvous)
    if not nodes.several:
        raise ConfigError("join lends this machine to a run on several: pass --nnodes 2 or more")
    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1 (processes on this machine), got {nproc}")
    work = work_folder_beside(out.absolute())
    console.print(f"following the training steps announced in {work} (rendezvous {nodes.rendezvous})")
    done = join(work, lambda job, rdzv_id: launch_torchrun(job, nproc, nodes, rdzv_id), wait_seconds=wait)
    console.print(f"training over: {done} step{'s' if done != 1 else ''} run on this machine")


@app.command("score")
@fails_cleanly
def score_cmd(
    data: DataArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by predict (<out>/model).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("custseq-scores"),
    as_of: AsOfOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    column: ColumnOpt = None,
    config: ConfigOpt = None,
    head: Annotated[
        list[Path] | None,
        typer.Option(help="Head folder written by `custseq fit-head` (repeatable): adds head_<label> to predictions."),
    ] = None,
) -> None:
    """Score new data with a saved model (its columns, vocabularies and horizon)."""
    from custseq.pipelines.score import score

    check_writable(out, replaces=True)
    cfg = run_config(config, column) if (config or column) else None  # None: the model's own data settings
    tables = Tables.of(data_of(data), customers=customers, events=events, columns=cfg.columns if cfg else None)
    from custseq.downstream.apply import add_heads, load_heads_for

    heads = load_heads_for(model, head) if head else []  # a wrong head fails before the scoring
    with stage("scoring"):
        run = score(model, tables, cfg, as_of=as_of, out=out)
    if heads:
        with stage(f"applying {len(heads)} head(s)"):
            run = add_heads(run, heads, model, tables, cfg)
    unknown = {k: v for k, v in (run.metrics.unknown_values or {}).items() if v}
    if unknown:
        console.print(f"  [dim]note:[/] values the model has not seen (mapped to the unknown id): {unknown}")
    print_scores(run)
    _report_and_outputs(run)


@app.command("pretrain")
@fails_cleanly
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
    check_writable(out)
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
    cfg = run_config(config, column, base=PRETRAIN_DEFAULTS, window=window_options(as_of, horizon), model=model)
    run = pretrain(tables_of(data, customers, events, cfg), cfg, out, nproc=nproc, resume=resume, progress=True)
    if run.manifest is not None:  # None only on torchrun ranks other than 0
        print_pretrain(run.manifest, out)


@app.command("embed")
@fails_cleanly
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

    check_writable(out, file=True)
    cfg = run_config(config, column, window=window_options(as_of))
    table, scoring = embed_customers(model, tables_of(data, customers, events, cfg), cfg, out)
    unknown = {k: v for k, v in scoring.unknown_values.items() if v}
    console.print(
        f"{table.num_rows:,} customers embedded as of {scoring.window.as_of} "
        f"({table.num_columns - 1} dimensions) -> [bold]{out}[/]"
    )
    if unknown:
        console.print(f"  [dim]note:[/] values the model has not seen (mapped to the unknown id): {unknown}")


@app.command("demo")
@fails_cleanly
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    horizon: Annotated[str, typer.Option(help="Prediction horizon.")] = "90d",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Predict churn and value for the bundled CDNOW data (23,570 customers, 1997–1998)."""
    check_writable(out, replaces=True)
    console.print(f"custseq {__version__} demo: CDNOW master data (Fader & Hardie), horizon {horizon}")
    cfg = with_seed(run_config(config, window=window_options(horizon=horizon)), seed)
    predict_and_print(Tables.of(cdnow_path(), columns=cfg.columns), out, cfg)


def predict_and_print(
    tables: Tables, out: Path, cfg: RunConfig, *, resume: bool = False, nproc: int = 1, nodes: Nodes | None = None
) -> None:
    from custseq.pipelines.predict import predict  # torch is imported only by the commands that need it

    # stages and training bars on stderr
    run = predict(tables, cfg, out=out, resume=resume, progress=True, nproc=nproc, nodes=nodes)
    print_validation(run.metrics.tables)
    print_training(run.metrics, run.as_of)
    print_scores(run)
    _report_and_outputs(run)


def _report_and_outputs(run: PredictRun) -> None:
    if run.out_dir is not None:
        print_outputs(run.out_dir, write_report_if_enabled(run.out_dir, run.data_config.report))
