"""`custseq plan` and `custseq report`: new plans for saved predictions, and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custseq.cli.app import (
    CatalogueOpt,
    ConfigOpt,
    ProductsOpt,
    app,
    console,
    fails_cleanly,
    run_config,
    write_report_if_enabled,
)
from custseq.io.atomic import check_writable, require_complete
from custseq.io.run_files import RunFolder


@app.command("plan")
@fails_cleanly
def plan_cmd(
    folder: Annotated[Path, typer.Argument(help="Output folder of predict or score (with predictions.parquet).")],
    catalogue: CatalogueOpt = None,
    products: ProductsOpt = None,
    threshold: Annotated[
        float | None, typer.Option(help="Churn probability above which plans switch to retention actions.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="replace (retention actions only) or augment.")] = None,
    k: Annotated[int | None, typer.Option(help="Actions per customer.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: FOLDER).")] = None,
    config: ConfigOpt = None,
    decisions: Annotated[
        Path | None,
        typer.Option(help="review.csv with its decision column filled in (custseq, btyd or override): applied first."),
    ] = None,
) -> None:
    """Re-plan saved predictions with another catalogue, threshold or mode, or reviewers' decisions (no model)."""
    from custseq.pipelines.plan import replan

    check_writable(out or folder)
    changes = {"catalogue": catalogue, "products": products, "retention_threshold": threshold, "mode": mode,
               "k": k}  # fmt: skip
    cfg = run_config(config, actions=changes)
    actions = cfg.actions
    planned = replan(folder, actions, out, decisions)
    target = out or folder
    flagged = int(planned["retention_flag"].sum())
    console.print(
        f"[bold]{len(planned):,}[/] plans: {flagged:,} customers with churn above {actions.retention_threshold:g} "
        f"get retention actions ({actions.mode}), the rest the next-event model's items and growth actions"
    )
    if decisions is not None:
        decided = RunFolder(target).read_metrics().review_decisions or {}
        console.print("reviewers' decisions applied: " + ", ".join(f"{n:,} {k}" for k, n in decided.items()))
    if (folder / "report.html").exists():
        write_report_if_enabled(target, cfg.report)
    console.print(f"Outputs in [bold]{target}/[/] (predictions.parquet/.csv, metrics.json)")


@app.command("report")
@fails_cleanly
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

    require_complete(folder, "custseq report")
    check_writable(out or folder / "report.html", file=True)
    cfg = run_config(config, report={"interactive": interactive}).report
    path = write_report(folder, out, cfg)
    console.print(f"Report in [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB)")
