"""A user's per-customer labels (``--labels labels.csv``): read, checked and encoded for a head.

The file holds ``customer_id`` and one label column (any name; ``--label-column`` picks one among several).
Classification labels are classes written as text or numbers (0/1, yes/no, or several names); regression
labels are numbers. Rows without a label are counted and left out; everything else that cannot be used is an
error that names the values.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from custseq.errors import DataReadError, SchemaError

ID_COLUMN = "customer_id"
# two-class labels whose negative class is obvious: the positive one (second) is what the head's column gives
NATURAL_PAIRS = (("0", "1"), ("false", "true"), ("no", "yes"), ("n", "y"), ("f", "t"))


@dataclass(frozen=True)
class HeadLabels:
    """Labels of one task, one row per customer, in the file's order."""

    name: str  # the label column
    customer_ids: tuple[str, ...]
    values: np.ndarray  # regression: (N,) float64; classification: (N,) int64 index into classes
    classes: tuple[str, ...]  # classification: class names, the positive one last when there are two; () regression
    rows_without_label: int  # rows left out because their label (or id) was empty

    @property
    def task(self) -> str:
        return "classification" if self.classes else "regression"

    def take(self, rows: np.ndarray) -> HeadLabels:
        """The labels of some rows (positions), same classes."""
        ids = tuple(self.customer_ids[i] for i in rows)
        return HeadLabels(self.name, ids, self.values[rows], self.classes, self.rows_without_label)


def read_labels(
    source: Path | str | pd.DataFrame,
    task: str,
    *,
    label_column: str | None = None,
    max_classes: int = 20,
) -> HeadLabels:
    """Read a labels table (CSV, CSV.gz, Parquet or a pandas frame) for ``task``.

    Parameters
    ----------
    source
        The labels: ``customer_id`` and the label column.
    task
        ``classification`` or ``regression``.
    label_column
        The label's column; default the only column besides ``customer_id``.
    max_classes
        More distinct classification values than this are refused (a regression label, or an id).

    Raises
    ------
    DataReadError
        If the file is missing or not CSV/Parquet.
    SchemaError
        If a column is missing, a customer appears twice, or the values do not fit the task.
    """
    frame = _read_frame(source)
    where = str(source) if not isinstance(source, pd.DataFrame) else "the labels frame"
    column = _label_column(frame, label_column, where)
    id_cells, label_cells = frame[ID_COLUMN].map(_text), frame[column].map(_text)
    present = (id_cells != "") & (label_cells != "")
    ids: list[str] = id_cells[present].tolist()
    labels: list[str] = label_cells[present].tolist()
    _refuse_duplicates(ids, where)
    if not ids:
        raise SchemaError(f"{where}: no row has both a {ID_COLUMN} and a {column!r} value")
    missing = int((~present).sum())
    classes: tuple[str, ...] = ()
    if task == "regression":
        values = _numbers(labels, column, where)
    else:
        classes = _classes(labels, column, where, max_classes)
        index = {c: i for i, c in enumerate(classes)}
        values = np.array([index[_class_name(v)] for v in labels], dtype=np.int64)
    return HeadLabels(column, tuple(ids), values, classes, missing)


def _read_frame(source: Path | str | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.astype(object)
    path = Path(source)
    if not path.is_file():
        raise DataReadError(f"labels file {path} not found; pass a CSV or Parquet file of customer_id and the label")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(path).to_pandas().astype(object)
        if name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
            sep = "\t" if ".tsv" in name else None
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataReadError(f"cannot read labels file {path}: {e}") from None
    raise DataReadError(f"labels file {path}: unknown format; pass a .csv, .csv.gz or .parquet file")


def _label_column(frame: pd.DataFrame, wanted: str | None, where: str) -> str:
    columns = [str(c) for c in frame.columns]
    if ID_COLUMN not in columns:
        raise SchemaError(f"{where} has no {ID_COLUMN!r} column (found {columns}); name the customer id column so")
    others = [c for c in columns if c != ID_COLUMN]
    if wanted is not None:
        if wanted not in others:
            raise SchemaError(f"{where} has no label column {wanted!r}; its columns are {others}")
        return wanted
    if len(others) != 1:
        raise SchemaError(
            f"{where} has {len(others)} columns besides {ID_COLUMN} ({others}); name the label with --label-column"
        )
    return others[0]


def _text(value: Any) -> str:
    """A cell as stripped text; missing values (None, NaN) as ''; a whole float as an integer (12346.0, an id read
    from a column with gaps, is customer 12346)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _refuse_duplicates(ids: list[str], where: str) -> None:
    repeated = [c for c, n in Counter(ids).items() if n > 1]
    if repeated:
        raise SchemaError(
            f"{where}: {len(repeated)} customer(s) have more than one label row (e.g. {sorted(repeated)[:5]}); "
            "keep one label per customer"
        )


def _numbers(labels: list[str], column: str, where: str) -> np.ndarray:
    values = pd.to_numeric(pd.Series(labels), errors="coerce").to_numpy(dtype=np.float64)
    bad = [labels[i] for i in np.flatnonzero(~np.isfinite(values))]
    if bad:
        raise SchemaError(
            f"{where}: {len(bad)} value(s) of {column!r} are not finite numbers (e.g. {sorted(set(bad))[:5]}); a "
            "regression label is a number per customer (for classes pass --task classification)"
        )
    return values


def _class_name(value: str) -> str:
    """Numbers written as integers name one class however written (1, 1.0, 01); other text as given."""
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if math.isfinite(number) and number == int(number) else value


def _classes(labels: list[str], column: str, where: str, max_classes: int) -> tuple[str, ...]:
    names = sorted({_class_name(v) for v in labels})
    fractional = [n for n in names if _is_fraction(n)]
    if fractional:
        raise SchemaError(
            f"{where}: {column!r} holds numbers that are not whole (e.g. {fractional[:3]}), which are not classes; "
            "for a numeric label pass --task regression"
        )
    if len(names) > max_classes:
        raise SchemaError(
            f"{where}: {column!r} has {len(names)} distinct values (at most {max_classes} classes); for a numeric "
            "label pass --task regression"
        )
    if len(names) < 2:
        raise SchemaError(
            f"{where}: every label of {column!r} is {names[0]!r}; a classification needs at least two classes"
        )
    if len(names) == 2:
        lowered = tuple(n.lower() for n in names)
        for negative, positive in NATURAL_PAIRS:
            if set(lowered) == {negative, positive}:
                return tuple(sorted(names, key=lambda n: n.lower() == positive))
    return tuple(names)


def _is_fraction(text: str) -> bool:
    """A number that is not whole (2.5, 1e-3): a measurement, not a class."""
    try:
        number = float(text)
    except ValueError:
        return False
    return math.isfinite(number) and not number.is_integer()
