"""Per-group corrections of the final predictions: a churn logit shift and a value factor per customer group.

The bias audit (:mod:`custseq.evaluation.fairness`) finds groups whose churn or value is miscalibrated on the
validation customers; with ``[audit] recalibrate_groups`` it fits one :class:`GroupCorrection` per flagged
group, and the :class:`~custseq.models.predictor.Predictor` applies them to every customer of ``predict`` and
``score``. A group is re-found at scoring time by its :class:`GroupRule`, a test on one column of the features
table (a categorical value, or a numeric bin's edges from the training window), so that the same customers
are corrected at both times.

A customer in several corrected groups (one per attribute) gets every one of their corrections: churn logit
shifts add up and value factors multiply. The corrections are fitted one after the other, each on the
predictions already corrected by the ones before it (largest miscalibration first), so the part two
overlapping groups share is corrected once, not once per group. It is one pass, not iterated: a later group's
correction also moves the customers it shares with an earlier group (the audit's cross-fitted before/after
figures are measured with every correction applied, so they show it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from custseq.errors import ArtifactError, SchemaError

RuleKind = Literal["value", "other", "missing", "range"]
RULE_KINDS: tuple[str, ...] = ("value", "other", "missing", "range")
MAX_LOGIT_SHIFT = 3.0  # a group whose customers all churned (or none did) would need an infinite shift
_BISECTION_STEPS = 60  # the shift to 1e-17 of MAX_LOGIT_SHIFT


@dataclass(frozen=True)
class GroupRule:
    """Which customers belong to one group: a test on one column of the features table.

    ``value``: the text of the column equals ``values[0]``; ``other``: it is present and none of ``values``
    (the values that have groups of their own); ``missing``: it is missing; ``range``: the number is above
    ``low`` (None: no lower end) and at most ``high`` (None: no upper end).
    """

    column: str  # in the features table: profile_<column>, or T for tenure
    kind: RuleKind
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"group rule kind must be one of {RULE_KINDS}, got {self.kind!r}")
        if self.kind == "value" and len(self.values) != 1:
            raise ValueError(f"a value rule tests one value, got {self.values!r}")

    def members(self, column: pd.Series) -> np.ndarray:
        """Boolean mask of the rows of ``column`` in the group."""
        if self.kind == "range":
            x = as_numbers(column)
            inside = ~np.isnan(x)
            if self.low is not None:
                inside &= x > self.low
            if self.high is not None:
                inside &= x <= self.high
            return inside
        text = as_text(column)
        present = np.array([v is not None for v in text], dtype=bool)
        if self.kind == "missing":
            return ~present
        if self.kind == "value":
            return np.array([v == self.values[0] for v in text], dtype=bool)
        kept = set(self.values)
        return present & np.array([v not in kept for v in text], dtype=bool)

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "values": list(self.values), "low": self.low,
                "high": self.high}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupRule:
        low, high = d.get("low"), d.get("high")
        return cls(
            str(d["column"]), d["kind"], tuple(str(v) for v in d.get("values", ())),
            None if low is None else float(low), None if high is None else float(high),
        )  # fmt: skip


def as_text(column: pd.Series) -> list[str | None]:
    """A column's values as text, None where missing (how categorical groups compare values)."""
    return [None if pd.isna(v) else str(v) for v in column]


def as_numbers(column: pd.Series) -> np.ndarray:
    """A column's values as floats, NaN where missing or not a number (how numeric groups compare values)."""
    return np.asarray(pd.to_numeric(column, errors="coerce"), dtype=float)


@dataclass(frozen=True)
class GroupCorrection:
    """One group's correction: its churn logit moved by ``churn_shift``, its expected value times ``value_factor``."""

    attribute: str
    group: str
    rule: GroupRule
    churn_shift: float = 0.0  # added to logit(churn probability)
    value_factor: float = 1.0  # multiplies the expected value and its quantiles

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "group": self.group, "rule": self.rule.to_json(),
                "churn_shift": self.churn_shift, "value_factor": self.value_factor}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupCorrection:
        return cls(str(d["attribute"]), str(d["group"]), GroupRule.from_json(d["rule"]), float(d["churn_shift"]),
                   float(d["value_factor"]))  # fmt: skip


def corrections_from_json(items: Any) -> tuple[GroupCorrection, ...]:
    """The corrections saved in predictor.json (none when the key is absent, as before they existed).

    Raises
    ------
    ArtifactError
        If an entry is incomplete or of the wrong type.
    """
    if items is None:
        return ()
    try:
        return tuple(GroupCorrection.from_json(c) for c in items)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"predictor.json: a group correction is incomplete or corrupted: {e!r}") from None


def apply_corrections(
    corrections: Sequence[GroupCorrection], features: pa.Table, churn: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Churn and expected value of the customers of ``features`` (its row order) with every correction applied.

    Raises
    ------
    SchemaError
        If a correction's column is not in ``features`` (scored without the customers table it was fitted with).
    """
    if not corrections:
        return churn, value
    groups = []
    for c in corrections:
        if c.rule.column not in features.column_names:
            raise SchemaError(
                f"the model corrects group {c.group!r} of {c.attribute!r} (column {c.rule.column}), but the "
                "features lack that column; score with the customers table the model was trained with"
            )
        groups.append(c.rule.members(features.column(c.rule.column).to_pandas()))
    shifts, factors = [c.churn_shift for c in corrections], [c.value_factor for c in corrections]
    return corrected(churn, value, groups, shifts, factors)


def corrected(
    churn: np.ndarray,
    value: np.ndarray,
    groups: Sequence[np.ndarray],
    shifts: Sequence[float],
    factors: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Churn with each group's logit shift added, value times each group's factor (``groups``: boolean masks).

    A customer in no corrected group keeps their predictions to the bit.
    """
    shift, factor = np.zeros(len(churn)), np.ones(len(value))
    for inside, s, f in zip(groups, shifts, factors, strict=True):
        shift = np.where(inside, shift + s, shift)
        factor = np.where(inside, factor * f, factor)
    churn_out = np.where(shift != 0, _sigmoid(_logit(churn) + shift), churn)
    return churn_out, np.where(factor != 1, value * factor, value)


def fit_churn_shifts(
    churned: np.ndarray, probability: np.ndarray, groups: Sequence[np.ndarray], shrinkage: float
) -> list[float]:
    """One logit shift per group (boolean masks over the customers), fitted in the order given.

    Each shift makes its group's mean predicted churn equal its observed rate, on the predictions the earlier
    shifts already moved, and is then shrunk toward 0 by n / (n + ``shrinkage``), n the group's customers.
    A group without customers gets 0.
    """
    p, shifts = np.asarray(probability, dtype=float), []
    for inside in groups:
        n = int(inside.sum())
        s = churn_shift(churned[inside], p[inside]) * n / (n + shrinkage) if n else 0.0
        p = corrected(p, p, [inside], [s], [1.0])[0]
        shifts.append(s)
    return shifts


def fit_value_factors(
    actual: np.ndarray, expected: np.ndarray, groups: Sequence[np.ndarray], shrinkage: float, max_factor: float
) -> list[float]:
    """One value factor per group, fitted in the order given (as :func:`fit_churn_shifts`).

    Each factor makes its group's predicted total equal its actual total, is shrunk toward 1 by raising it to
    n / (n + ``shrinkage``), and is kept within [1 / ``max_factor``, ``max_factor``]. A group without
    customers, or whose predicted or actual total is not positive, gets 1.
    """
    v, factors = np.asarray(expected, dtype=float), []
    for inside in groups:
        n = int(inside.sum())
        raw = value_factor(actual[inside], v[inside], max_factor) if n else 1.0
        f = float(np.clip(raw ** (n / (n + shrinkage)) if n else 1.0, 1.0 / max_factor, max_factor))
        v = corrected(v, v, [inside], [0.0], [f])[1]
        factors.append(f)
    return factors


def churn_shift(churned: np.ndarray, probability: np.ndarray) -> float:
    """The logit shift that makes the mean predicted churn equal the observed rate (within ±MAX_LOGIT_SHIFT)."""
    target, logit = float(np.mean(churned)), _logit(probability)
    low, high = -MAX_LOGIT_SHIFT, MAX_LOGIT_SHIFT
    for _ in range(_BISECTION_STEPS):  # the mean of sigmoid(logit + s) grows with s
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(logit + mid).mean() < target else (low, mid)
    return (low + high) / 2


def value_factor(actual: np.ndarray, expected: np.ndarray, max_factor: float) -> float:
    """actual / predicted total, within [1 / max_factor, max_factor]; 1 when either total is not positive."""
    predicted, spent = float(expected.sum()), float(np.clip(actual, 0, None).sum())
    if predicted <= 0 or spent <= 0:
        return 1.0
    return float(np.clip(spent / predicted, 1.0 / max_factor, max_factor))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))
