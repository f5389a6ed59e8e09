"""The tabular half of the model's input: feature tables → a standardised, missing-aware float matrix.

Fitted on training windows only, saved as JSON with the model. Numeric columns are transformed with
``sign(x)·log1p(|x|)`` (money and counts are heavy-tailed), standardised, and missing values become 0 with
a ``<column>__missing`` indicator for every column that had missing values in training. Categorical columns
(profile attributes) become vocabulary ids (0 = missing, 1 = unknown, 2… = values seen at least
``min_count`` times), for an embedding in the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custseq.errors import ArtifactError, SchemaError

KEY_COLUMNS = ("customer_id", "cutoff")
TABULAR_FORMAT = 1
MISSING_ID, UNKNOWN_ID, FIRST_ID = 0, 1, 2


@dataclass(frozen=True)
class TabularSpec:
    """How feature tables become model inputs (fitted on training windows)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    missing_indicators: tuple[str, ...]  # numeric columns that get a 0/1 missing column
    categorical: dict[str, tuple[str, ...]]  # column -> known values (id = FIRST_ID + position)
    format_version: int = TABULAR_FORMAT

    @property
    def width(self) -> int:
        """Columns of the float matrix: numeric values, then missing indicators."""
        return len(self.numeric) + len(self.missing_indicators)

    @property
    def column_names(self) -> tuple[str, ...]:
        return (*self.numeric, *(f"{c}__missing" for c in self.missing_indicators))

    def category_sizes(self) -> dict[str, int]:
        return {c: FIRST_ID + len(v) for c, v in self.categorical.items()}

    def to_json(self) -> dict:
        d = asdict(self)
        d["categorical"] = {k: list(v) for k, v in self.categorical.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> TabularSpec:
        if not isinstance(d, dict) or d.get("format_version") != TABULAR_FORMAT:
            found = d.get("format_version") if isinstance(d, dict) else type(d).__name__
            raise ArtifactError(
                f"tabular spec of format {found} cannot be read by this custseq (reads {TABULAR_FORMAT})"
            )
        try:
            return cls(
                numeric=tuple(d["numeric"]),
                means=tuple(float(x) for x in d["means"]),
                stds=tuple(float(x) for x in d["stds"]),
                missing_indicators=tuple(d["missing_indicators"]),
                categorical={k: tuple(v) for k, v in d["categorical"].items()},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"tabular spec JSON is incomplete or corrupted: {e!r}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> TabularSpec:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactError(f"cannot read tabular spec {path}: {e}") from None


@dataclass(frozen=True)
class TabularInputs:
    """A feature table as arrays, rows in the table's order."""

    customer_ids: list[str]
    values: np.ndarray  # (N, width) float32
    categories: dict[str, np.ndarray]  # column -> (N,) int64 ids


def fit_tabular(tables: list[pa.Table], *, min_count: int = 5) -> TabularSpec:
    """Fit the spec on training-window feature tables (all rows of all windows together)."""
    table = pa.concat_tables(tables, promote_options="default")
    numeric, means, stds, indicators, categorical = [], [], [], [], {}
    for name in table.column_names:
        if name in KEY_COLUMNS:
            continue
        column = table.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_decimal(column.type):
            x = _signed_log1p(as_float(column))
            seen = x[~np.isnan(x)]
            mean = float(seen.mean()) if len(seen) else 0.0
            std = float(seen.std()) if len(seen) else 0.0
            numeric.append(name)
            means.append(mean)
            stds.append(std if std > 1e-12 else 1.0)
            if np.isnan(x).any():
                indicators.append(name)
        elif (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_boolean(column.type)
        ):
            counts = pc.value_counts(pc.cast(column, pa.string()).drop_null()).to_pylist()
            kept = sorted((c["values"] for c in counts if c["counts"] >= min_count), key=str)
            categorical[name] = tuple(kept)
    return TabularSpec(tuple(numeric), tuple(means), tuple(stds), tuple(indicators), categorical)


def missing_inputs_message(missing: list[str]) -> str:
    """What the data lack that the model was trained with, named by the input that brings it."""
    profile = sorted(c.removeprefix("profile_") for c in missing if c.startswith("profile_"))
    events = [c for c in missing if "event" in c]
    other = [c for c in missing if not c.startswith("profile_") and c not in events]
    needs = []
    if profile:
        needs.append(f"customer profiles with {', '.join(profile)} (--customers FILE; customers= in Python)")
    if events:
        needs.append("behaviour events (--events FILE; events= in Python)")
    if other:
        needs.append(f"the transaction columns behind the features {other} (map them with --column ROLE=COLUMN)")
    return "this model was trained with inputs the data lack: it needs " + "; and ".join(needs)


def transform_tabular(spec: TabularSpec, table: pa.Table) -> TabularInputs:
    """Turn a feature table into arrays with a fitted spec.

    Raises
    ------
    SchemaError
        If the table lacks a column the spec was fitted with.
    """
    if missing := [c for c in (*spec.numeric, *spec.categorical) if c not in table.column_names]:
        raise SchemaError(missing_inputs_message(missing))
    n = table.num_rows
    values = np.zeros((n, spec.width), dtype=np.float32)
    for j, (name, mean, std) in enumerate(zip(spec.numeric, spec.means, spec.stds, strict=True)):
        x = (_signed_log1p(as_float(table.column(name))) - mean) / std
        values[:, j] = np.nan_to_num(x, nan=0.0)
    offset = len(spec.numeric)
    for k, name in enumerate(spec.missing_indicators):
        values[:, offset + k] = np.isnan(as_float(table.column(name)))
    categories = {name: category_ids(table.column(name), known) for name, known in spec.categorical.items()}
    return TabularInputs(table.column("customer_id").to_pylist(), values, categories)


def category_ids(column: pa.ChunkedArray, known: tuple[str, ...]) -> np.ndarray:
    """Vocabulary ids of a categorical column: MISSING_ID, UNKNOWN_ID, or FIRST_ID + the value's position."""
    lookup = {v: FIRST_ID + i for i, v in enumerate(known)}
    raw = pc.cast(column, pa.string()).to_pylist()
    return np.array([MISSING_ID if v is None else lookup.get(v, UNKNOWN_ID) for v in raw], dtype=np.int64)


def as_float(column: pa.ChunkedArray) -> np.ndarray:
    """The column as float64, non-finite values (an overflowing ratio or fit) as missing."""
    x = np.array(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    x[np.isinf(x)] = np.nan
    return x


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sign(x) * np.log1p(np.abs(x))
