"""The contract every baseline follows: fit on training windows, predict churn and value for a window.

A window is what ``prepare`` wrote for one cutoff: ``features.parquet`` (one row per customer with history
before the cutoff) and, for labelled windows, ``labels.parquet`` (same rows, same order). Baselines read the
same features as custseq, so a comparison differs only in the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.errors import ArtifactError
from custseq.io.prepared import WindowFolder


@dataclass(frozen=True)
class WindowTables:
    """One window's features and (when labelled) labels, rows aligned."""

    features: pa.Table
    labels: pa.Table | None
    horizon_days: int

    @classmethod
    def read(cls, folder: WindowFolder | Path, horizon_days: int) -> WindowTables:
        window = folder if isinstance(folder, WindowFolder) else WindowFolder(Path(folder))
        features = pq.read_table(window.features)
        labels = pq.read_table(window.labels) if window.has_labels else None
        if labels is not None and not labels.column("customer_id").equals(features.column("customer_id")):
            raise ArtifactError(f"{window.folder}: features and labels list different customers; run prepare again")
        return cls(features, labels, horizon_days)

    @property
    def customer_ids(self) -> list[str]:
        return self.features.column("customer_id").to_pylist()

    def label_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``churned`` (0/1 float) and ``value``; the window must be labelled."""
        if self.labels is None:
            raise ValueError("this window has no labels")
        churned = self.labels.column("churned").to_numpy(zero_copy_only=False).astype(np.float64)
        return churned, self.labels.column("value").to_numpy(zero_copy_only=False).astype(np.float64)


@dataclass(frozen=True)
class BaselinePredictions:
    """Churn probability and value over the horizon, in the window's customer order."""

    customer_ids: list[str]
    churn_probability: np.ndarray
    value: np.ndarray


class Baseline(Protocol):
    @property
    def name(self) -> str: ...  # read-only: a class attribute or a property

    def fit(self, windows: Sequence[WindowTables]) -> Baseline: ...

    def predict(self, window: WindowTables) -> BaselinePredictions: ...
