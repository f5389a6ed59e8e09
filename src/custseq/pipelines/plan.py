"""Plan: re-plan saved predictions with other action settings or another catalogue (no model needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custseq.config import ActionConfig
from custseq.errors import ConfigError
from custseq.pipelines.diagnostics import write_json
from custseq.pipelines.outputs import actions_metrics
from custseq.scoring.actions import load_catalogue, plan_actions

REPLANNED = ("predictions.parquet", "predictions.csv", "metrics.json", "report.html")  # what `replan` writes


def replan(folder: Path | str, actions: ActionConfig, out: Path | str | None = None) -> pd.DataFrame:
    """Re-plan saved predictions (``folder/predictions.parquet``) with other action settings or catalogue.

    The next-event proposals saved in ``next_items`` are reused, so no model is needed. Writes
    predictions.parquet / .csv and the ``actions`` entry of metrics.json to ``out`` (default: ``folder``); a
    new ``out`` also receives the run's other files (validation curves, audit…) so that its report is whole.

    Raises
    ------
    ConfigError
        If the folder has no predictions, or the catalogue is invalid.
    SchemaError
        If the predictions lack a column the plans need.
    """
    folder = Path(folder)
    source = folder / "predictions.parquet"
    if not source.is_file():
        raise ConfigError(f"{source} not found; pass the --out folder of predict or score")
    catalogue = load_catalogue(actions.catalogue)
    planned = plan_actions(pq.read_table(source).to_pandas(), actions, catalogue)
    target = Path(out) if out is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != folder.resolve():
        for other in folder.iterdir():
            if other.is_file() and other.name not in REPLANNED and not (target / other.name).exists():
                shutil.copy2(other, target / other.name)
    table = pa.Table.from_pandas(planned, preserve_index=False)
    pq.write_table(table, target / "predictions.parquet")
    pacsv.write_csv(table, target / "predictions.csv")
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    previous = metrics.get("actions", {})  # how the items were proposed stays as predict said
    metrics["actions"] = actions_metrics(
        actions, previous.get("item_field"), note=previous.get("note"), item_mixture=previous.get("item_mixture")
    )
    write_json(target / "metrics.json", metrics)
    return planned
