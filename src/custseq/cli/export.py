"""`custseq export`: a saved model in another platform's format (MLflow's pyfunc, built from code: no pickle)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from custseq.cli.app import app, console, fails_cleanly, stage


class ExportFormat(StrEnum):
    mlflow = "mlflow"


@app.command("export")
@fails_cleanly
def export_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by predict (<out>/model).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (must not exist).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Format to write.")] = ExportFormat.mlflow,
    example: Annotated[
        Path | None,
        typer.Option(
            help="CSV or Parquet transactions like those the model scores: their first rows become the MLflow "
            "input example and signature (default: rows built from the model's columns and vocabulary)."
        ),
    ] = None,
) -> None:
    """Export a saved model: --format mlflow writes an MLflow pyfunc model (pip install 'custseq\\[mlflow]')."""
    from custseq.export.mlflow_export import export_mlflow

    with stage(f"exporting {model} as an MLflow model"):
        written = export_mlflow(model, out, example=example)
    console.print(f"MLflow model in {written}/ — load it with mlflow.pyfunc.load_model({str(written)!r})")
