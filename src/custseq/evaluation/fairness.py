"""Bias audit: churn and value metrics per customer group, flags where a group departs from everyone.

Issue 8's seed idea is to *audit for bias across groups and keep a human in the loop*. This module does
the first half and prepares the second: :func:`audit` computes, for every group of every audited attribute
(the ``profile_*`` columns of the features table and always ``tenure``), how well the churn probability
ranks (AUC), how well it is calibrated, how the expected value compares with what the group spent, and how
the group spreads over the segments. :func:`review_list` lists the customers on whom custseq and the BG/NBD +
Gamma-Gamma baseline disagree strongly, for a person to look at before any campaign acts on them. Flags are
prompts for a human; only when asked (``[audit] recalibrate_groups``, off by default) does :func:`recalibrate`
turn the calibration flags into corrections: a churn logit shift per group flagged for its calibration gap, a
value factor per group flagged for its value ratio, fitted on the audited validation customers, their effect
measured cross-fitted, and re-applied by ``predict`` and ``score`` to every customer of the group
(:mod:`custseq.models.group_calibration`).

Why a group is compared with the overall metrics, not with 0 (or 1 for the value ratio): the audit asks
whether the model treats a group *differently* from the population, not whether the model is good (that
is what ``evaluate`` measures). Every model is somewhat miscalibrated: when the churn rate of the scored
horizon shifts, every group's calibration gap moves with it, and an absolute test would flag every group
at once and hide the one group the model treats worse. AUC has no zero to compare with at all. Measured
against the overall value, a flag means "this group's error differs from everyone's by more than the
tolerance", which is the disparity a person has to judge. Groups smaller than ``min_group_size`` are
reported but never flagged, because their metrics are noise.

Caveats a reviewer should keep in mind: a group's AUC can be lower than the overall one only because the
group is more alike (a tenure bin narrows the spread of recency and frequency), so a flag is where to
look, not a verdict; and categorical groups are compared one at a time, not in combination.

Settings are :class:`~custseq.config.AuditConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from custseq.baselines.btyd import BtydPredictions
from custseq.config import AuditConfig
from custseq.errors import ConfigError, EmptyTableError, SchemaError
from custseq.io.run_files import Audit as AuditFile
from custseq.io.run_files import (
    AuditAttribute,
    AuditCorrection,
    AuditGroup,
    AuditGroupMetrics,
    AuditRecalibration,
    AuditSummary,
    BeforeAfter,
)
from custseq.metrics import roc_auc
from custseq.models.group_calibration import (
    GroupCorrection,
    GroupRule,
    as_numbers,
    as_text,
    corrected,
    fit_churn_shifts,
    fit_value_factors,
)
from custseq.scoring.segments import SEGMENTS

PROFILE_PREFIX = "profile_"  # how features.rfm names the customers table's attributes
TENURE = "tenure"  # the attribute every audit has: days since the first purchase (the feature T), binned
OTHER, MISSING = "other", "missing"
LABELLED_COLUMNS = ("customer_id", "churned", "value", "churn_probability", "clv_expected", "segment")
PREDICTION_COLUMNS = ("customer_id", "churn_probability", "clv_expected", "segment")
BTYD_COLUMNS = ("customer_id", "btyd_churn_probability", "btyd_clv_expected")
REVIEW_COLUMNS = (
    "customer_id",
    "reason",
    "churn_probability",
    "btyd_churn_probability",
    "clv_expected",
    "btyd_clv_expected",
    "segment",
)
_EPS = 1e-12  # a difference equal to its tolerance (up to float noise) is not flagged


@dataclass(frozen=True)
class GroupMetrics:
    """Churn and value metrics of one set of labelled customers (a group, or all of them)."""

    n: int
    churn_auc: float | None  # None when the customers are all churners or all stayers
    mean_predicted_churn: float
    observed_churn: float
    calibration_gap: float  # mean predicted − observed churn
    mean_predicted_value: float
    mean_actual_value: float
    value_ratio: float | None  # mean predicted / mean actual value; None when the actual mean is 0
    segment_shares: dict[str, float]  # segment -> share of the customers, every segment of the population

    def to_record(self) -> AuditGroupMetrics:
        """As audit.json records it."""
        return AuditGroupMetrics(
            n=self.n,
            churn_auc=self.churn_auc,
            mean_predicted_churn=self.mean_predicted_churn,
            observed_churn=self.observed_churn,
            calibration_gap=self.calibration_gap,
            mean_predicted_value=self.mean_predicted_value,
            mean_actual_value=self.mean_actual_value,
            value_ratio=self.value_ratio,
            segment_shares=dict(self.segment_shares),
        )


@dataclass(frozen=True)
class GroupAudit:
    """One group of one attribute: its metrics and why it is flagged (empty when it is not)."""

    attribute: str
    group: str
    metrics: GroupMetrics
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Audit:
    """The bias audit of one set of labelled predictions (from :func:`audit`)."""

    settings: AuditConfig
    labelled_customers: int
    overall: GroupMetrics
    groups: tuple[GroupAudit, ...] = field(default_factory=tuple)  # attribute by attribute, groups in order
    recalibration: Recalibration | None = None  # with [audit] recalibrate_groups (see recalibrate)

    @property
    def flagged_groups(self) -> int:
        """Groups with at least one flag."""
        return sum(1 for g in self.groups if g.flags)

    @property
    def corrections(self) -> tuple[GroupCorrection, ...]:
        """The group corrections for the predictor; none without recalibration."""
        return self.recalibration.corrections if self.recalibration is not None else ()

    def summary(self) -> AuditSummary:
        """What metrics.json says of the audit."""
        corrected_groups = len(self.recalibration.groups) if self.recalibration is not None else None
        return AuditSummary(labelled_customers=self.labelled_customers, flagged_groups=self.flagged_groups,
                            corrected_groups=corrected_groups)  # fmt: skip

    def to_record(self) -> AuditFile:
        """audit.json's contents (what the HTML report reads)."""
        attributes: dict[str, list[AuditGroup]] = {}
        for g in self.groups:
            attributes.setdefault(g.attribute, []).append(
                AuditGroup(group=g.group, metrics=g.metrics.to_record(), flags=g.flags)
            )
        return AuditFile(
            settings=self.settings,
            labelled_customers=self.labelled_customers,
            overall=self.overall.to_record(),
            attributes=tuple(AuditAttribute(attribute=a, groups=tuple(gs)) for a, gs in attributes.items()),
            flagged_groups=self.flagged_groups,
            recalibration=self.recalibration.to_record() if self.recalibration is not None else None,
        )

    def flagged(self) -> pd.DataFrame:
        """One row per flag: ``attribute``, ``group``, ``n`` and ``reason``."""
        rows = [(g.attribute, g.group, g.metrics.n, reason) for g in self.groups for reason in g.flags]
        return pd.DataFrame(rows, columns=["attribute", "group", "n", "reason"])


@dataclass(frozen=True)
class AttributeGroups:
    """One audited attribute's groups, in report order, each with the rule that finds its customers again (in
    another window's features, for the group corrections)."""

    attribute: str
    rules: dict[str, GroupRule]  # group label -> rule

    def labels(self, features: pd.DataFrame) -> pd.Categorical:
        """The group of each row of ``features`` (built from the same table, every row is in one group)."""
        labels = np.full(len(features), OTHER, dtype=object)  # only rows no rule takes: none in the source table
        taken = np.zeros(len(features), dtype=bool)
        for group, rule in self.rules.items():
            inside = rule.members(features[rule.column].reset_index(drop=True)) & ~taken
            labels[inside], taken = group, taken | inside
        return pd.Categorical(labels, categories=_present(list(dict.fromkeys([*self.rules, OTHER])), labels))


def group_definitions(features: pd.DataFrame, cfg: AuditConfig) -> tuple[AttributeGroups, ...]:
    """The audited attributes of ``features`` and their groups (see :func:`audit_groups`), with their rules.

    Raises
    ------
    SchemaError
        If ``customer_id`` or ``T`` is missing.
    ConfigError
        If ``cfg.columns`` names a column that is not a profile attribute of ``features``.
    """
    if missing := [c for c in ("customer_id", "T") if c not in features.columns]:
        raise SchemaError(
            f"the features table lacks column(s) {missing}; found {list(features.columns)}. "
            "Use the features.parquet of the scored window."
        )
    profile = {_attribute_name(c): c for c in features.columns if c.startswith(PROFILE_PREFIX)}
    chosen = list(profile) if cfg.columns is None else _chosen_attributes(cfg.columns, profile)
    definitions = []
    for name in chosen:
        column = features[profile[name]]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        rules = _numeric_rules(column, cfg.bins) if numeric else _categorical_rules(column, cfg.max_groups)
        definitions.append(AttributeGroups(name, rules))
    definitions.append(AttributeGroups(TENURE, _numeric_rules(features["T"], cfg.bins)))
    return tuple(definitions)


def group_labels(features: pd.DataFrame, definitions: Sequence[AttributeGroups]) -> pd.DataFrame:
    """``customer_id`` and one column of group labels per attribute (see :func:`audit_groups`)."""
    columns: dict[str, np.ndarray | pd.Categorical] = {"customer_id": features["customer_id"].to_numpy()}
    columns |= {d.attribute: d.labels(features) for d in definitions}
    return pd.DataFrame(columns, index=features.index)


def audit_groups(features: pd.DataFrame, cfg: AuditConfig) -> pd.DataFrame:
    """The group of every customer for each audited attribute.

    Categorical attributes keep their ``cfg.max_groups`` most frequent values (ties by value); rarer values
    become ``"other"`` and missing ones ``"missing"``. Numeric attributes are cut into ``cfg.bins`` quantile
    bins labelled by the smallest and largest value in them (``"18–29"``); one with at most ``cfg.bins``
    distinct values keeps one group per value. ``tenure`` (days since the first purchase, the feature ``T``)
    is always there, so an audit exists without a customers table. :func:`group_definitions` gives each
    group's rule: its value, or its bin's edges (above the previous bin's largest value, up to its own).

    Parameters
    ----------
    features : pandas.DataFrame
        A features table (:func:`custseq.features.rfm.build_features`) with ``customer_id``, ``T`` and the
        customers table's attributes as ``profile_<column>``.
    cfg : AuditConfig
        ``columns`` picks attributes (by ``<column>`` or ``profile_<column>``; None = all), ``bins`` and
        ``max_groups`` size the groups.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` and one column of string labels per attribute (a pandas categorical whose categories
        are the groups in report order: bins ascending or most frequent first, then ``"other"``, then
        ``"missing"``), named ``<column>`` for ``profile_<column>`` (kept as ``profile_<column>`` if that
        would be ``tenure``), then ``tenure``; one row per row of ``features``, with its index.

    Raises
    ------
    SchemaError
        If ``customer_id`` or ``T`` is missing.
    ConfigError
        If ``cfg.columns`` names a column that is not a profile attribute of ``features``.
    """
    return group_labels(features, group_definitions(features, cfg))


def _attribute_name(column: str) -> str:
    name = column.removeprefix(PROFILE_PREFIX)
    return column if name == TENURE else name  # the customers table's own "tenure" must not hide T's


def _chosen_attributes(columns: tuple[str, ...], profile: dict[str, str]) -> list[str]:
    by_any_name = {**{c: a for a, c in profile.items()}, **{a: a for a in profile}}
    if unknown := [c for c in columns if c not in by_any_name and c != TENURE]:
        raise ConfigError(
            f"audit columns {unknown} are not profile attributes of the features table; "
            f"available: {sorted(profile) or 'none (no customers table was given)'} (tenure is always audited)"
        )
    return list(dict.fromkeys(by_any_name[c] for c in columns if c != TENURE or c in by_any_name))


def _categorical_rules(column: pd.Series, max_groups: int) -> dict[str, GroupRule]:
    text = pd.Series(as_text(column), dtype=object)
    ranked = sorted(text.dropna().value_counts().items(), key=lambda kv: (-kv[1], kv[0]))  # ties by value
    kept = [cast(str, value) for value, _ in ranked[:max_groups]]  # the values of `text`, a column of str
    name = str(column.name)
    rules = {value: GroupRule(name, "value", (value,)) for value in kept}
    if len(ranked) > len(kept):
        rules[OTHER] = GroupRule(name, "other", tuple(kept))
    if text.isna().any():
        rules[MISSING] = GroupRule(name, "missing")
    return rules


def _numeric_rules(column: pd.Series, bins: int) -> dict[str, GroupRule]:
    values = as_numbers(column)
    present = ~np.isnan(values)
    name = str(column.name)
    rules = {}
    if present.any():
        x = pd.Series(values[present])
        if x.nunique() <= bins:  # few distinct values (a 0/1 flag): one group each
            codes = pd.factorize(x, sort=True)[0]
        else:
            codes = pd.qcut(x, bins, labels=False, duplicates="drop").to_numpy(dtype=int)
        codes = pd.factorize(codes, sort=True)[0]  # 0, 1, … in ascending order of the values
        ends = x.groupby(codes).agg(["min", "max"])
        highs = ends["max"].to_numpy(dtype=float)
        labels = _range_labels(ends["min"].to_numpy(), highs)
        # a bin holds what lies above the previous bin's largest value, up to its own; the ends are open, so
        # that another window's customers beyond the first or the last value still have a bin
        lows = [None, *highs[:-1].tolist()]
        tops = [*highs[:-1].tolist(), None]
        rules = {label: GroupRule(name, "range", low=lo, high=hi) for label, lo, hi in zip(labels, lows, tops,
                                                                                            strict=True)}  # fmt: skip
    if not present.all():
        rules[MISSING] = GroupRule(name, "missing")
    return rules


def _present(order: list[str], labels: Any) -> list[str]:
    seen = set(labels)
    return [g for g in order if g in seen]


def _range_labels(lows: np.ndarray, highs: np.ndarray) -> list[str]:
    """'low–high' per bin (one number when they are equal), with as many digits as keep the labels apart."""
    for digits in range(3, 16):
        labels = [_number(lo, digits) if lo == hi else f"{_number(lo, digits)}–{_number(hi, digits)}"
                  for lo, hi in zip(lows, highs, strict=True)]  # fmt: skip
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _number(x: float, digits: int) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.{max(digits - 3, 0)}f}"


def audit(labelled: pd.DataFrame, groups: pd.DataFrame, cfg: AuditConfig) -> Audit:
    """Metrics of every group of every attribute, flagged where they differ from the overall ones.

    A group with at least ``cfg.min_group_size`` customers is flagged once per metric that differs from the
    overall value by more than its tolerance: churn AUC (``auc_tolerance``), calibration gap
    (``calibration_tolerance``), value ratio (``value_tolerance``) and each segment's share
    (``segment_share_tolerance``; not for tenure, by which the segments are defined). A metric that is None
    in the group or overall is not compared.

    Parameters
    ----------
    labelled : pandas.DataFrame
        One row per labelled customer: ``customer_id``, ``churned`` (bool or 0/1), ``value`` (actual value
        in the horizon), ``churn_probability``, ``clv_expected`` and ``segment``.
    groups : pandas.DataFrame
        From :func:`audit_groups`: ``customer_id`` and one column per attribute; it may hold more customers.
    cfg : AuditConfig
        Group size and tolerances.

    Returns
    -------
    Audit
        Overall metrics and one :class:`GroupAudit` per attribute and group.

    Raises
    ------
    SchemaError
        If a column is missing or has missing values, ``labelled`` is empty, or a labelled customer has no
        row (or more than one) in ``groups``.
    """
    rows = _labelled_with_groups(labelled, groups)
    segments = [*SEGMENTS, *sorted(set(rows["segment"]) - set(SEGMENTS))]
    overall = _metrics(rows, segments)
    audited = []
    for attribute in (c for c in groups.columns if c != "customer_id"):
        for group, members in _in_order(rows, attribute):
            metrics = _metrics(members, segments)
            flags = _flags(metrics, overall, cfg, attribute) if metrics.n >= cfg.min_group_size else ()
            audited.append(GroupAudit(attribute, group, metrics, flags))
    return Audit(cfg, len(rows), overall, tuple(audited))


def _labelled_with_groups(labelled: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    if missing := [c for c in LABELLED_COLUMNS if c not in labelled.columns]:
        raise SchemaError(
            f"the labelled predictions lack column(s) {missing}; found {list(labelled.columns)}. "
            "Join the predictions with the window's labels (churned, value) by customer_id."
        )
    if labelled.empty:
        raise EmptyTableError("the labelled predictions have no rows; the audit needs labelled customers")
    if holes := {c: int(n) for c, n in labelled[list(LABELLED_COLUMNS)].isna().sum().items() if n}:
        raise SchemaError(f"the labelled predictions have missing values in {holes}; every customer needs them")
    if "customer_id" not in groups.columns:
        raise SchemaError(f"groups lack column customer_id; found {list(groups.columns)}. Use audit_groups.")
    if groups["customer_id"].duplicated().any():
        repeated = groups.loc[groups["customer_id"].duplicated(), "customer_id"].iloc[0]
        raise SchemaError(f"groups have more than one row for customer_id {repeated!r}; give one per customer")
    absent = ~labelled["customer_id"].isin(groups["customer_id"])
    if absent.any():
        raise SchemaError(
            f"{int(absent.sum())} labelled customer(s) have no groups "
            f"(e.g. {labelled['customer_id'][absent].iloc[0]!r}); build the groups from the features of the same window"
        )
    rows = labelled[list(LABELLED_COLUMNS)].merge(groups, on="customer_id", how="left", validate="one_to_one")
    rows["churned"] = rows["churned"].astype(float)
    return rows


def _in_order(rows: pd.DataFrame, attribute: str) -> list[tuple[str, pd.DataFrame]]:
    """An attribute's groups in the order of its categories (from :func:`audit_groups`), else largest first."""
    column = rows[attribute]
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = [g for g in column.cat.categories if (column == g).any()]
    else:
        counts = column.astype(str).value_counts()
        order = sorted(counts.index, key=lambda g: (g in (OTHER, MISSING), g == MISSING, -counts[g], g))
    text = column.astype(str)
    return [(str(g), rows[text == str(g)]) for g in order]


def _metrics(rows: pd.DataFrame, segments: list[str]) -> GroupMetrics:
    churned = rows["churned"].to_numpy(dtype=float)
    predicted = rows["churn_probability"].to_numpy(dtype=float)
    value = rows["value"].to_numpy(dtype=float)
    expected = rows["clv_expected"].to_numpy(dtype=float)
    mean_predicted, observed = float(predicted.mean()), float(churned.mean())
    mean_expected, mean_actual = float(expected.mean()), float(value.mean())
    shares = rows["segment"].value_counts(normalize=True)
    return GroupMetrics(
        n=len(rows),
        churn_auc=_or_none(roc_auc(churned, predicted)),
        mean_predicted_churn=mean_predicted,
        observed_churn=observed,
        calibration_gap=mean_predicted - observed,
        mean_predicted_value=mean_expected,
        mean_actual_value=mean_actual,
        value_ratio=mean_expected / mean_actual if mean_actual != 0 else None,
        segment_shares={s: float(shares.get(s, 0.0)) for s in segments},
    )


def _or_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _flags(group: GroupMetrics, overall: GroupMetrics, cfg: AuditConfig, attribute: str) -> tuple[str, ...]:
    # The segments are defined by tenure and recency (new = a recent first purchase): their shares differ by
    # tenure by construction, and flagging that would only teach a reviewer to ignore flags.
    shares = overall.segment_shares if attribute != TENURE else {}
    compared = [
        ("churn AUC", group.churn_auc, overall.churn_auc, cfg.auc_tolerance),
        ("calibration gap (mean predicted − observed churn)", group.calibration_gap, overall.calibration_gap,
         cfg.calibration_tolerance),
        ("value ratio (mean predicted / actual value)", group.value_ratio, overall.value_ratio, cfg.value_tolerance),
        *((f"share of segment {s}", group.segment_shares[s], overall.segment_shares[s], cfg.segment_share_tolerance)
          for s in shares),
    ]  # fmt: skip
    return tuple(
        f"{metric} {mine:.3f} vs {everyone:.3f} overall (differs by {excess:.3f} > {tolerance:g})"
        for metric, mine, everyone, tolerance in compared
        if (excess := _excess(mine, everyone, tolerance)) is not None
    )


def _excess(mine: float | None, everyone: float | None, tolerance: float) -> float | None:
    """|mine − everyone| where it exceeds the tolerance (a flag); None otherwise or where either is None."""
    if mine is None or everyone is None or abs(mine - everyone) <= tolerance + _EPS:
        return None
    return abs(mine - everyone)


# --- group corrections ([audit] recalibrate_groups) --------------------------------------------------------------

CROSS_FIT_SEED = 0  # the random halves of the validation customers
Key = tuple[str, str]  # (attribute, group)
Pair = tuple[float | None, float | None]  # before, after
Figures = tuple[float | None, float | None, float | None]  # |calibration gap|, |value ratio − 1|, churn AUC
MEASURED = (
    "cross-fitted: the validation customers were split into two random halves, each half measured as predicted "
    "(before) and as corrected by what the other half fitted (after), and the two halves averaged; gaps are "
    "absolute (|mean predicted − observed churn|, |value ratio − 1|), since signed ones would cancel over the halves"
)


@dataclass(frozen=True)
class CorrectedGroup:
    """One group's correction (fitted on all its validation customers) and its cross-fitted effect."""

    correction: GroupCorrection
    n: int
    churn_corrected: bool  # its calibration gap was flagged
    value_corrected: bool  # its value ratio was flagged
    calibration_gap: Pair  # |mean predicted − observed churn|
    value_ratio_error: Pair  # |mean predicted / actual value − 1|

    def to_record(self) -> AuditCorrection:
        c = self.correction
        return AuditCorrection(
            attribute=c.attribute,
            group=c.group,
            n=self.n,
            churn_shift=c.churn_shift if self.churn_corrected else None,
            value_factor=c.value_factor if self.value_corrected else None,
            calibration_gap=_before_after(self.calibration_gap),
            value_ratio_error=_before_after(self.value_ratio_error),
        )


@dataclass(frozen=True)
class Recalibration:
    """The group corrections of one audit (from :func:`recalibrate`), with their cross-fitted effect."""

    groups: tuple[CorrectedGroup, ...]
    overall_calibration_gap: Pair  # every validation customer
    overall_value_ratio_error: Pair
    overall_churn_auc: Pair

    @property
    def corrections(self) -> tuple[GroupCorrection, ...]:
        """What the predictor applies (:attr:`custseq.models.predictor.Predictor.group_corrections`)."""
        return tuple(g.correction for g in self.groups)

    def to_record(self) -> AuditRecalibration:
        return AuditRecalibration(
            measured=MEASURED,
            groups=tuple(g.to_record() for g in self.groups),
            overall_calibration_gap=_before_after(self.overall_calibration_gap),
            overall_value_ratio_error=_before_after(self.overall_value_ratio_error),
            overall_churn_auc=_before_after(self.overall_churn_auc),
        )


def _before_after(pair: Pair) -> BeforeAfter:
    return BeforeAfter(before=pair[0], after=pair[1])


def recalibrate(
    result: Audit,
    labelled: pd.DataFrame,
    groups: pd.DataFrame,
    definitions: Sequence[AttributeGroups],
    cfg: AuditConfig,
) -> Recalibration:
    """Correct the churn and value of the groups ``result`` flags, fitted on the audited customers.

    A group whose calibration gap is flagged gets a churn logit shift that makes its mean predicted churn equal
    its observed rate; one whose value ratio is flagged gets a factor that makes its predicted total value
    equal its actual total (within [1 / ``cfg.max_value_factor``, ``cfg.max_value_factor``]); both are shrunk
    by n / (n + ``cfg.recalibration_shrinkage``). Groups flagged only for AUC or segment shares are not
    corrected (a shift cannot fix a ranking), and groups smaller than ``cfg.min_group_size`` are never flagged.
    Corrections are fitted one after the other, the largest excess over the tolerance first, each on the
    predictions the earlier ones corrected (:mod:`custseq.models.group_calibration`).

    The before/after figures are cross-fitted (:data:`MEASURED`): an in-sample correction would close every
    gap by construction, and a gap that is only noise must not look closed. Each fit sees half the customers,
    so with shrinkage the after figures understate what the final correction, fitted on all of them, does.

    Parameters
    ----------
    result : Audit
        :func:`audit` of ``labelled`` and ``groups``.
    labelled, groups : pandas.DataFrame
        What ``result`` audited.
    definitions : sequence of AttributeGroups
        :func:`group_definitions` that ``groups`` were labelled with: each corrected group's rule.
    cfg : AuditConfig
        Shrinkage and value bounds.

    Raises
    ------
    SchemaError
        As :func:`audit`, or if a flagged group has no rule in ``definitions``.
    """
    rows = _labelled_with_groups(labelled, groups)
    churn_groups = _to_correct(result, cfg, "calibration_gap", cfg.calibration_tolerance)
    value_groups = _to_correct(result, cfg, "value_ratio", cfg.value_tolerance)
    chosen = list(dict.fromkeys([*churn_groups, *value_groups]))
    rules = {(d.attribute, g): rule for d in definitions for g, rule in d.rules.items()}
    if unknown := [key for key in chosen if key not in rules]:
        raise SchemaError(f"flagged group(s) {unknown} have no rule; label the groups with group_definitions")
    masks = {key: (rows[key[0]].astype(str) == key[1]).to_numpy() for key in chosen}
    fitter = _Fitter(rows, masks, churn_groups, value_groups, cfg)
    shifts, factors = fitter.fit(np.ones(len(rows), dtype=bool))
    everyone = np.ones(len(rows), dtype=bool)
    measured = fitter.cross_fitted([*(masks[key] for key in chosen), everyone])
    corrected_groups = tuple(
        CorrectedGroup(
            correction=GroupCorrection(key[0], key[1], rules[key], shifts.get(key, 0.0), factors.get(key, 1.0)),
            n=int(masks[key].sum()),
            churn_corrected=key in shifts,
            value_corrected=key in factors,
            calibration_gap=gap,
            value_ratio_error=ratio,
        )
        for key, (gap, ratio, _) in zip(chosen, measured[:-1], strict=True)
    )
    gap, ratio, auc = measured[-1]
    return Recalibration(corrected_groups, gap, ratio, auc)


def _to_correct(result: Audit, cfg: AuditConfig, metric: str, tolerance: float) -> list[Key]:
    """(attribute, group) of the groups flagged for ``metric``, the largest excess over the tolerance first."""
    everyone = getattr(result.overall, metric)
    excess = {
        (g.attribute, g.group): e
        for g in result.groups
        if g.metrics.n >= cfg.min_group_size
        and (e := _excess(getattr(g.metrics, metric), everyone, tolerance)) is not None
    }
    return sorted(excess, key=lambda key: -excess[key])  # stable: ties keep the report's order


class _Fitter:
    """The corrections of :func:`recalibrate` fitted on some of the labelled customers, and measured cross-fitted."""

    def __init__(self, rows: pd.DataFrame, masks: dict[Key, np.ndarray], churn_groups: list[Key],
                 value_groups: list[Key], cfg: AuditConfig) -> None:  # fmt: skip
        self.churned = rows["churned"].to_numpy(dtype=float)
        self.actual = rows["value"].to_numpy(dtype=float)
        self.churn = rows["churn_probability"].to_numpy(dtype=float)
        self.value = rows["clv_expected"].to_numpy(dtype=float)
        self.masks, self.churn_groups, self.value_groups, self.cfg = masks, churn_groups, value_groups, cfg

    def fit(self, used: np.ndarray) -> tuple[dict[Key, float], dict[Key, float]]:
        """Churn shifts and value factors fitted on the ``used`` customers."""
        shrinkage, masks = self.cfg.recalibration_shrinkage, self.masks
        shifts = fit_churn_shifts(self.churned[used], self.churn[used],
                                  [masks[k][used] for k in self.churn_groups], shrinkage)  # fmt: skip
        factors = fit_value_factors(self.actual[used], self.value[used], [masks[k][used] for k in self.value_groups],
                                    shrinkage, self.cfg.max_value_factor)  # fmt: skip
        return dict(zip(self.churn_groups, shifts, strict=True)), dict(zip(self.value_groups, factors, strict=True))

    def cross_fitted(self, sets: list[np.ndarray]) -> list[tuple[Pair, Pair, Pair]]:
        """Per set of customers: (|calibration gap|, |value ratio − 1|, churn AUC), each (before, after), every
        figure the mean over the two halves of its value on the half (after: corrected by the other half's fit)."""
        half = np.random.default_rng(CROSS_FIT_SEED).permutation(len(self.churn)) % 2 == 1
        keys = list(self.masks)
        halves = []  # per half, per set: (figures before, figures after)
        for held_out in (half, ~half):
            shifts, factors = self.fit(~held_out)
            churn, value = corrected(
                self.churn, self.value, [self.masks[k] for k in keys],
                [shifts.get(k, 0.0) for k in keys], [factors.get(k, 1.0) for k in keys],
            )  # fmt: skip
            halves.append([(self._figures(s & held_out, self.churn, self.value),
                            self._figures(s & held_out, churn, value)) for s in sets])  # fmt: skip
        return [_averaged(first, second) for first, second in zip(*halves, strict=True)]

    def _figures(self, inside: np.ndarray, churn: np.ndarray, value: np.ndarray) -> Figures:
        if not inside.any():
            return None, None, None
        gap = abs(float(churn[inside].mean() - self.churned[inside].mean()))
        spent = float(self.actual[inside].mean())
        ratio = abs(float(value[inside].mean()) / spent - 1) if spent != 0 else None
        return gap, ratio, _or_none(roc_auc(self.churned[inside], churn[inside]))


def _averaged(first: tuple[Figures, Figures], second: tuple[Figures, Figures]) -> tuple[Pair, Pair, Pair]:
    """(before, after) of each figure, each the mean of its values on the two halves."""
    (before_1, after_1), (before_2, after_2) = first, second
    gap, ratio, auc = (
        (_mean_of(b1, b2), _mean_of(a1, a2))
        for b1, b2, a1, a2 in zip(before_1, before_2, after_1, after_2, strict=True)
    )
    return gap, ratio, auc


def _mean_of(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def btyd_frame(btyd: BtydPredictions) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma predictions of one window (:func:`custseq.baselines.btyd.predict_btyd`), in the
    columns :func:`review_list` reads: ``customer_id`` (as text), ``btyd_churn_probability`` (P(no purchase in
    the horizon)) and ``btyd_clv_expected`` (expected purchases × Gamma-Gamma spend), in the fit's order.
    """
    return pd.DataFrame(
        {
            "customer_id": btyd.customer_ids,
            "btyd_churn_probability": btyd.churn_probability,
            "btyd_clv_expected": btyd.value,
        }
    )


def review_list(predictions: pd.DataFrame, btyd: pd.DataFrame, cfg: AuditConfig) -> pd.DataFrame:
    """Customers on whom custseq and the BG/NBD baseline disagree strongly, for a person to review.

    A customer is listed when ``|churn − BG/NBD churn| >= cfg.review_churn_gap``, or when the larger of the
    two expected values is at least ``cfg.review_min_value`` and at least ``cfg.review_value_ratio`` times
    the smaller (a zero or negative smaller value counts as an unbounded ratio). The list is sorted by the
    disagreement in multiples of its threshold (the larger of ``|Δchurn| / review_churn_gap`` and
    ``log(ratio) / log(review_value_ratio)``, the smaller value floored at ``review_min_value /
    review_value_ratio`` so that zeros rank by the larger value), largest first, then by customer id.

    Parameters
    ----------
    predictions : pandas.DataFrame
        custseq's predictions: ``customer_id``, ``churn_probability``, ``clv_expected`` and ``segment``.
    btyd : pandas.DataFrame
        From :func:`btyd_frame`: ``customer_id``, ``btyd_churn_probability`` and ``btyd_clv_expected``.
        Customers missing from it are not listed.
    cfg : AuditConfig
        ``review_churn_gap``, ``review_value_ratio`` and ``review_min_value``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``reason`` (every reason, joined by "; "), ``churn_probability``,
        ``btyd_churn_probability``, ``clv_expected``, ``btyd_clv_expected`` and ``segment``.

    Raises
    ------
    SchemaError
        If a column is missing from either table.
    """
    for name, table, columns in (("predictions", predictions, PREDICTION_COLUMNS), ("btyd", btyd, BTYD_COLUMNS)):
        if missing := [c for c in columns if c not in table.columns]:
            raise SchemaError(f"{name} lack column(s) {missing}; found {list(table.columns)}")
    ours = predictions[list(PREDICTION_COLUMNS)].assign(_key=predictions["customer_id"].astype(str))
    theirs = btyd[list(BTYD_COLUMNS[1:])].assign(_key=btyd["customer_id"].astype(str).to_numpy())
    both = ours.merge(theirs, on="_key", how="inner").drop(columns="_key")  # not in btyd: not compared
    churn_gap = (both["churn_probability"] - both["btyd_churn_probability"]).abs().to_numpy(dtype=float)
    a, b = both["clv_expected"].to_numpy(dtype=float), both["btyd_clv_expected"].to_numpy(dtype=float)
    larger, smaller = np.fmax(a, b), np.fmin(a, b)
    big_enough = (larger >= cfg.review_min_value) & (larger > 0)
    with np.errstate(divide="ignore"):
        ratio = np.where(smaller > 0, larger / np.where(smaller > 0, smaller, 1.0), np.inf)
    churn_differs = churn_gap >= cfg.review_churn_gap - _EPS
    value_differs = big_enough & (ratio >= cfg.review_value_ratio * (1 - _EPS))
    floor = max(cfg.review_min_value / cfg.review_value_ratio, _EPS)
    value_score = np.where(big_enough, np.log(larger / np.fmax(smaller, floor)) / np.log(cfg.review_value_ratio), 0.0)
    both["reason"] = [
        "; ".join(
            ([f"churn {p:.2f} vs BG/NBD {q:.2f} (gap {g:.2f})"] if c else [])
            + ([f"value {u:,.2f} vs BG/NBD {w:,.2f} ({_times(r)})"] if v else [])
        )
        for p, q, g, c, u, w, r, v in zip(
            both["churn_probability"], both["btyd_churn_probability"], churn_gap, churn_differs,
            a, b, ratio, value_differs, strict=True,
        )
    ]  # fmt: skip
    both["_score"] = np.fmax(churn_gap / cfg.review_churn_gap, np.maximum(value_score, 0.0))
    listed = both[churn_differs | value_differs]
    listed = listed.assign(_id=listed["customer_id"].astype(str)).sort_values(
        ["_score", "_id"], ascending=[False, True], kind="stable"
    )
    return listed[list(REVIEW_COLUMNS)].reset_index(drop=True)


def _times(ratio: float) -> str:
    if math.isinf(ratio):
        return "one of them 0 or less"
    return f"{ratio:.1f}x" if ratio < 1000 else "over 1000x"  # beyond that the smaller value is ~0: no scale
