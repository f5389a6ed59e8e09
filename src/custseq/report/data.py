"""Read a run folder into :class:`ReportData`: every file optional, every unreadable file explained.

A run folder is what ``custseq predict`` and ``custseq evaluate`` write. The report reads only these files
(:data:`RUN_FILES`); a missing one leaves its field ``None``, and one that exists but cannot be read leaves
it ``None`` with the reason in :attr:`ReportData.problems`, so that each section can say why it is empty.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from custseq.errors import DataReadError

log = logging.getLogger(__name__)

PREDICT = "custseq predict"
EVALUATE = "custseq evaluate"
RUN_FILES = {
    "metrics.json": PREDICT,
    "predictions.parquet": PREDICT,
    "embeddings.parquet": PREDICT,
    "history.json": PREDICT,
    "attention.json": PREDICT,
    "validation.parquet": PREDICT,
    "profit.json": PREDICT,
    "audit.json": PREDICT,
    "review.csv": PREDICT,
    "test_predictions.parquet": EVALUATE,
    "evaluation.json": EVALUATE,
}  # file -> the command that writes it


@dataclass
class ReportData:
    """Everything the report shows, as read from one run folder; ``None`` where a file is absent."""

    run_dir: Path
    metrics: dict[str, Any] | None = None  # metrics.json
    predictions: pd.DataFrame | None = None  # one row per scored customer
    embeddings: pd.DataFrame | None = None  # customer_id, e0 … e{D-1}
    history: dict[str, list[dict[str, Any]]] | None = None  # {"pretrain": [...], "finetune": [...]}
    attention: dict[str, Any] | None = None  # {"layers": L, "customers": [...]}
    validation: pd.DataFrame | None = None  # labelled held-out customers of the latest training window
    test_predictions: pd.DataFrame | None = None  # `custseq evaluate`'s test customers, every method
    evaluation: dict[str, Any] | None = None  # `custseq evaluate`'s summary
    profit: dict[str, Any] | None = None  # profit.json
    audit: dict[str, Any] | None = None  # audit.json
    review: pd.DataFrame | None = None  # review.csv: customers flagged for a human look
    problems: dict[str, str] = field(default_factory=dict)  # file -> why it could not be read

    def missing(self, file: str) -> str:
        """Why ``file``'s contents are not available, for a "not available" note."""
        if file in self.problems:
            return f"{file} could not be read ({self.problems[file]})"
        return f"{file} is not in the run folder; `{RUN_FILES.get(file, PREDICT)}` writes it"


_FIELDS = {
    "metrics.json": "metrics",
    "predictions.parquet": "predictions",
    "embeddings.parquet": "embeddings",
    "history.json": "history",
    "attention.json": "attention",
    "validation.parquet": "validation",
    "test_predictions.parquet": "test_predictions",
    "evaluation.json": "evaluation",
    "profit.json": "profit",
    "audit.json": "audit",
    "review.csv": "review",
}


def read_run(run_dir: Path | str) -> ReportData:
    """Read every report file of a run folder that is there.

    Parameters
    ----------
    run_dir : path
        A folder written by ``custseq predict`` (and, optionally, ``custseq evaluate``).

    Returns
    -------
    ReportData
        The files' contents; absent files give ``None`` and unreadable ones ``None`` plus a reason in
        ``problems``.

    Raises
    ------
    DataReadError
        If ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataReadError(
            f"run folder {run_dir} does not exist or is not a folder; give the --out folder of `custseq predict`"
        )
    data = ReportData(run_dir=run_dir)
    for file, attribute in _FIELDS.items():
        path = run_dir / file
        if not path.is_file():
            continue
        try:
            setattr(data, attribute, _read(path))
        except (OSError, ValueError, TypeError, ImportError) as error:  # a corrupt file must not stop the report
            log.warning("report: cannot read %s: %s", path, error)
            data.problems[file] = f"{type(error).__name__}: {error}"
    return data


def _read(path: Path) -> Any:
    if path.suffix == ".json":
        content = json.loads(path.read_text())
        if not isinstance(content, dict):
            raise ValueError(f"expected a JSON object, got {type(content).__name__}")
        return content
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"customer_id": str})
