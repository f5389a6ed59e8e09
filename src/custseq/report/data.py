"""Read a run folder into :class:`ReportData`: every file optional, every unreadable file explained.

A run folder is what ``custseq predict`` and ``custseq evaluate`` write. The report reads only these files
(:data:`RUN_FILES`), each through :class:`~custseq.io.run_files.RunFolder` into its typed contract; a missing
one leaves its field ``None``, and one that exists but cannot be read (corrupt, another format version, a key
missing) leaves it ``None`` with the reason in :attr:`ReportData.problems`, so that each section can say why it
is empty. A bad file never stops the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from custseq.errors import CustseqError, DataReadError
from custseq.io import run_files as rf
from custseq.io.run_files import Attention, Audit, EvaluationResult, History, Metrics, Profit, RunFileError, RunFolder

log = logging.getLogger(__name__)

PREDICT = "custseq predict"
EVALUATE = "custseq evaluate"
RUN_FILES = {
    rf.METRICS_FILE: PREDICT,
    rf.PREDICTIONS_FILE: PREDICT,
    rf.EMBEDDINGS_FILE: PREDICT,
    rf.HISTORY_FILE: PREDICT,
    rf.ATTENTION_FILE: PREDICT,
    rf.VALIDATION_FILE: PREDICT,
    rf.PROFIT_FILE: PREDICT,
    rf.AUDIT_FILE: PREDICT,
    rf.REVIEW_FILE: PREDICT,
    rf.CONTACTS_FILE: PREDICT,
    rf.TEST_PREDICTIONS_FILE: EVALUATE,
    rf.EVALUATION_FILE: EVALUATE,
}  # file -> the command that writes it


@dataclass
class ReportData:
    """Everything the report shows, as read from one run folder; ``None`` where a file is absent or unreadable."""

    run_dir: Path
    metrics: Metrics | None = None  # metrics.json
    predictions: pd.DataFrame | None = None  # one row per scored customer
    embeddings: pd.DataFrame | None = None  # customer_id, e0 … e{D-1}
    history: History | None = None  # pre-training and fine-tuning epochs
    attention: Attention | None = None  # sample customers' [CLS] attention
    validation: pd.DataFrame | None = None  # labelled held-out customers of the latest training window
    test_predictions: pd.DataFrame | None = None  # `custseq evaluate`'s test customers, every method
    evaluation: EvaluationResult | None = None  # `custseq evaluate`'s summary
    profit: Profit | None = None  # profit.json
    audit: Audit | None = None  # audit.json
    review: pd.DataFrame | None = None  # review.csv: customers flagged for a human look
    contacts: pd.DataFrame | None = None  # contacts.csv: whom to contact first, and why
    problems: dict[str, str] = field(default_factory=dict)  # file -> why it could not be read

    def missing(self, file: str) -> str:
        """Why ``file``'s contents are not available, for a "not available" note."""
        if file in self.problems:
            return f"{file} could not be read ({self.problems[file]})"
        return f"{file} is not in the run folder; `{RUN_FILES.get(file, PREDICT)}` writes it"


_READERS: dict[str, tuple[str, Callable[[RunFolder], Any]]] = {
    rf.METRICS_FILE: ("metrics", RunFolder.read_metrics),
    rf.PREDICTIONS_FILE: ("predictions", lambda folder: folder.read_predictions(lists="arrow")),
    rf.EMBEDDINGS_FILE: ("embeddings", RunFolder.read_embeddings),
    rf.HISTORY_FILE: ("history", RunFolder.read_history),
    rf.ATTENTION_FILE: ("attention", RunFolder.read_attention),
    rf.VALIDATION_FILE: ("validation", RunFolder.read_validation),
    rf.TEST_PREDICTIONS_FILE: ("test_predictions", RunFolder.read_test_predictions),
    rf.EVALUATION_FILE: ("evaluation", RunFolder.read_evaluation),
    rf.PROFIT_FILE: ("profit", RunFolder.read_profit),
    rf.AUDIT_FILE: ("audit", RunFolder.read_audit),
    rf.REVIEW_FILE: ("review", RunFolder.read_review),
    rf.CONTACTS_FILE: ("contacts", RunFolder.read_contacts),
}  # file -> (ReportData field, how to read it)


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
    folder = RunFolder(run_dir)
    for file, (attribute, read) in _READERS.items():
        if not folder.has(file):
            continue
        try:
            setattr(data, attribute, read(folder))
        except RunFileError as error:  # corrupt, another format version, a key missing: said in its section
            log.warning("report: cannot read %s", error)
            data.problems[file] = error.reason
        except (CustseqError, OSError, ValueError, TypeError, ImportError) as error:  # the report must not stop
            log.warning("report: cannot read %s: %s", run_dir / file, error)
            data.problems[file] = f"{type(error).__name__}: {error}"
    return data
