"""The files of a run folder: one typed contract per JSON file, and :class:`RunFolder`, which writes and reads them.

A run folder is what ``custseq predict`` / ``score`` / ``plan`` / ``evaluate`` write (DESIGN §4); a ``prepare``
output folder holds ``prepare.json``. Each JSON file is a frozen dataclass here, written with a top-level
``"format_version"`` (:data:`FORMAT_VERSION`); reading checks the version and every key (the conventions are in
:mod:`custseq.io.records`). Tables (predictions, embeddings, validation and test customers, the review list)
are written and read by :class:`RunFolder` too, so that every file name lives in this module.

=========================  =============================  ==========================================
file                       contract / RunFolder methods   written by
=========================  =============================  ==========================================
metrics.json               :class:`Metrics`               predict, score, plan (``actions`` only)
profit.json                :class:`Profit`                predict, score
audit.json                 :class:`Audit`                 predict
history.json               :class:`History`               predict
attention.json             :class:`Attention`             predict, score
evaluation.json            :class:`EvaluationResult`      evaluate
prepare.json               :class:`PrepareSummary`        prepare (in its output folder)
predictions.parquet + csv  ``write_predictions``          predict, score, plan
embeddings.parquet         ``write_embeddings``           predict, score
validation.parquet         ``write_validation``           predict
test_predictions.parquet   ``write_test_predictions``     evaluate
review.csv                 ``write_review``               predict, score
prospects.csv              :data:`PROSPECTS_CSV_FILE`     predict, score (with an events table)
run.json                   :class:`RunRecord`             every command above, last (:mod:`custseq.io.atomic`)
=========================  =============================  ==========================================

Every CSV cell of text that a spreadsheet would take for a formula (starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return; OWASP's "CSV injection") is written with a leading ``'`` (:func:`neutralised`), and so
is a text cell that already starts with ``'``, so that the readers here give back the value exactly
(:func:`restored`). Parquet files keep the raw values.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeAlias, TypeVar, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custseq.config import AuditConfig, ModelConfig, ProfitConfig, RunConfig, ValueScoreConfig
from custseq.errors import ArtifactError
from custseq.io.json_texts import parse_json_texts
from custseq.io.records import InvalidRecord, JsonRecord, decode_fields, encode_fields

FORMAT_VERSION = 1  # of every JSON run file; raise it when a file's keys or their meaning change

METRICS_FILE = "metrics.json"
PROFIT_FILE = "profit.json"
AUDIT_FILE = "audit.json"
HISTORY_FILE = "history.json"
ATTENTION_FILE = "attention.json"
EVALUATION_FILE = "evaluation.json"
EVALUATION_MARKDOWN_FILE = "evaluation.md"
PREPARE_FILE = "prepare.json"
PREDICTIONS_FILE = "predictions.parquet"
PREDICTIONS_CSV_FILE = "predictions.csv"
EMBEDDINGS_FILE = "embeddings.parquet"
VALIDATION_FILE = "validation.parquet"
TEST_PREDICTIONS_FILE = "test_predictions.parquet"
REVIEW_FILE = "review.csv"
CONTACTS_FILE = "contacts.csv"
PROSPECTS_CSV_FILE = "prospects.csv"  # people with events and no purchase yet, scored by their own model
DECISIONS_FILE = "decisions.csv"  # the reviewers' decisions applied by `custseq plan --decisions`
REPORT_FILE = "report.html"
RUN_FILE = "run.json"  # the completeness marker, written last (custseq.io.atomic)
MODEL_DIR = "model"
QUARANTINE_DIR = "quarantine"
NOT_AVAILABLE = "not available: "  # how metrics.json says why P(alive) is missing


class RunFileError(ArtifactError):
    """A run file that cannot be read: ``reason`` says why, without the path (the report shows it per file)."""

    def __init__(self, source: str | Path, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


class RunFile(JsonRecord):
    """Base of a JSON file's contract: ``to_json`` adds ``format_version``, ``from_json`` checks it."""

    file: ClassVar[str]  # its name in the folder
    writer: ClassVar[str]  # the command that writes it, for error messages

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **encode_fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: str | Path | None = None) -> Self:
        """The contents of one file, checked.

        Parameters
        ----------
        data : dict
            The parsed JSON.
        source : path, optional
            The file, for messages; defaults to the file's name.

        Raises
        ------
        RunFileError
            (an :class:`~custseq.errors.ArtifactError`) If the format version is not :data:`FORMAT_VERSION`
            (or is missing), or a key is missing, unknown or of the wrong type.
        """
        source = source if source is not None else cls.file
        rerun = f"write it again with this custseq (`{cls.writer}`)"
        if not isinstance(data, dict):
            raise RunFileError(source, f"must hold a JSON object, got {type(data).__name__}; {rerun}")
        found = data.get("format_version")
        if found is None:
            raise RunFileError(
                source, f"has no format_version; this custseq reads format_version {FORMAT_VERSION}: {rerun}"
            )
        if isinstance(found, bool) or found != FORMAT_VERSION:
            raise RunFileError(
                source, f"has format_version {found!r}; this custseq reads format_version {FORMAT_VERSION}: {rerun}"
            )
        try:
            return cast(Self, decode_fields(cls, data, "", ignore=frozenset({"format_version"})))
        except InvalidRecord as error:
            where = f"key '{error.key}'" if error.key else "the top level"
            raise RunFileError(source, f"{where} {error.problem}; {rerun}") from None


# --- parts shared by several files -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ColumnSource(JsonRecord):
    """How one canonical column was found in the user's table."""

    column: str  # canonical name (custseq.schema)
    source: str  # the user's column (or "a × b" for a product)
    how: str  # "detected" or "mapped"


@dataclass(frozen=True, kw_only=True)
class RuleCount(JsonRecord):
    """Rows one validation rule quarantined or flagged, and why."""

    rows: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class TableAccount(JsonRecord):
    """What validation did to one input table (``ValidationReport.to_dict()`` of :mod:`custseq.prepare`)."""

    mapping: tuple[ColumnSource, ...]
    extras: dict[str, str]  # extra column -> its kind
    rows_in: int
    rows_used: int
    rows_quarantined: int
    quarantined_by_rule: dict[str, RuleCount]
    flagged_by_rule: dict[str, RuleCount]  # kept, but flagged
    notes: tuple[str, ...]
    customer_id_type: str = "text"  # "integer": the user's ids are integers, and the outputs give them back so


@dataclass(frozen=True, kw_only=True)
class BgNbdFit(JsonRecord):
    """A BG/NBD fit: its parameters (Fader, Hardie & Lee 2005) and the penalizer it needed."""

    model: str  # "BG/NBD"
    penalizer: float
    r: float
    alpha: float
    a: float
    b: float
    note: str | None = None  # e.g. that it found no dropout


@dataclass(frozen=True, kw_only=True)
class PAliveUnavailable(JsonRecord):
    """Why there is no P(alive): BG/NBD could not be fitted. Written as the text ``"not available: <reason>"``."""

    json_kind: ClassVar[type] = str
    reason: str

    def to_json(self) -> str:
        return NOT_AVAILABLE + self.reason

    @classmethod
    def decode(cls, data: Any, key: str) -> Self:
        if not isinstance(data, str) or not data.startswith(NOT_AVAILABLE):
            raise InvalidRecord(key, f"must be a text starting with {NOT_AVAILABLE!r}, got {type(data).__name__}")
        return cls(reason=data.removeprefix(NOT_AVAILABLE))


@dataclass(frozen=True, kw_only=True)
class BtydFailed(JsonRecord):
    """A window's BG/NBD features could not be fitted (prepare.json)."""

    model: str
    error: str


# --- metrics.json ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BacktestMetrics(JsonRecord):
    """:func:`custseq.metrics.churn_value_metrics` of one set of predictions against what happened."""

    churn_auc: float
    churn_pr_auc: float
    churn_brier: float
    value_rmse: float
    value_mae: float
    value_gini: float
    value_top_decile_share: float
    composite: float


@dataclass(frozen=True, kw_only=True)
class ValidationMetrics(BacktestMetrics):
    """The fine-tuned model on its validation customers, with the calibration's effect and the best epoch."""

    churn_brier_before: float  # before calibration
    churn_brier_after: float  # after (cross-fitted)
    best_epoch: int
    validation_customers: int


@dataclass(frozen=True, kw_only=True)
class ProspectValidation(JsonRecord):
    """The prospects' model on the validation window's prospects (their churn: no first purchase)."""

    prospects: int
    first_purchase_rate: float
    churn_auc: float | None  # None when all or none of them bought
    recency_auc: float | None  # ranking by days since the last event alone: the baseline to beat
    churn_brier: float
    value_gini: float | None
    predicted_value: float
    actual_value: float


@dataclass(frozen=True, kw_only=True)
class ProspectSummary(JsonRecord):
    """People with events and no purchase before the scoring cutoff: how many, and whether they were scored."""

    mode: str  # the [prospects] mode: "score" or "exclude"
    prospects: int  # at the scoring cutoff
    scored: int  # in prospects.csv
    not_scored_because: str | None
    training_prospects: int | None = None
    validation: ProspectValidation | None = None
    expected_first_purchases: float | None = None
    expected_value: float | None = None


@dataclass(frozen=True, kw_only=True)
class CandidateValidation(JsonRecord):
    """One predictor candidate on the validation customers, before calibration (None: undefined there)."""

    churn_auc: float | None
    churn_brier: float | None
    value_gini: float | None
    value_total_ratio: float | None  # predicted / actual total


@dataclass(frozen=True, kw_only=True)
class ChosenBlend(JsonRecord):
    """weight × first + (1 − weight) × second; second None: first alone."""

    first: str
    second: str | None
    weight: float
    description: str


@dataclass(frozen=True, kw_only=True)
class ModelChoice(JsonRecord):
    """How the final predictions were made: every candidate's validation figures, the choice and the levels."""

    validation_customers: int
    candidates: dict[str, CandidateValidation]
    skipped: dict[str, str]  # candidate -> why it did not run
    churn: ChosenBlend
    value: ChosenBlend
    churn_auc: float  # of the final (calibrated) churn probability on the validation customers
    value_gini: float
    churn_calibration: str
    value_scale: float  # actual / predicted total on the validation customers (1: not calibrated)
    interval_below_p10: float  # validation share below P10 / above P90, cross-fitted halves
    interval_above_p90: float
    boosted_rounds: dict[str, tuple[int, ...]]  # candidate -> (churn, value) LightGBM rounds
    trained_horizon_days: int | None = None  # set when the requested horizon had no training window
    carried_by: str | None = None  # how the trained horizon's predictions were carried to the requested one
    # the latest training window's customers when the predictor learned from a sample of them (more than
    # [model.predictor] max_training_customers); None: from all of them
    sampled_from: int | None = None


@dataclass(frozen=True, kw_only=True)
class TaskWeighting(JsonRecord):
    mode: str  # "uncertainty", "fixed", …
    weights: tuple[float, ...]  # churn, value


@dataclass(frozen=True, kw_only=True)
class ValueScore(JsonRecord):
    formula: str  # in words, parameters filled in
    parameters: ValueScoreConfig
    modal_share: float | None = None  # share of customers holding the commonest score (2 decimals)
    rank_correlation_with_value: float | None = None  # Spearman, score vs clv_expected


@dataclass(frozen=True, kw_only=True)
class AuditSummary(JsonRecord):
    labelled_customers: int
    flagged_groups: int
    corrected_groups: int | None = None  # with [audit] recalibrate_groups: groups whose predictions are corrected


@dataclass(frozen=True, kw_only=True)
class ItemMixtureInfo(JsonRecord):
    """How the next-event head's proposals were mixed with each customer's own items (``ItemMixture``)."""

    weight: float
    half_life: float  # events
    fitted_on: str  # as-of date of the window it was fitted on
    customers: int
    hit_rate_at_k: dict[str, float]  # "head", "customer", "mixture"
    field: str
    k: int
    note: str  # "" when fitted


@dataclass(frozen=True, kw_only=True)
class ItemLevelInfo(JsonRecord):
    """Whether next items were proposed as products or as their categories, and why (``ItemLevel``)."""

    level: str  # "item" or "category"
    reason: str  # one sentence, shown in the report
    requested: str  # the item_level setting: "auto", "item" or "category"
    category_source: str | None  # where the categories came from; None: there are none
    categories: int | None  # categories that can be proposed
    customers: int  # held-out next purchases the hit rates were measured on (0: not measured)
    hit_rate_at_k: dict[str, float]  # "item", "category"; empty when not measured
    k: int
    min_item_hit_rate: float | None  # the threshold of item_level = "auto"


@dataclass(frozen=True, kw_only=True)
class ActionSettings(JsonRecord):
    """The plans' settings, the catalogue and how the next items were proposed."""

    item_field: str | None  # None: no item field, catalogue actions only
    retention_threshold: float
    mode: str
    k: int
    catalogue: str
    note: str | None = None
    item_mixture: ItemMixtureInfo | None = None
    item_level: ItemLevelInfo | None = None  # products or their categories (None: no items proposed)


@dataclass(frozen=True, kw_only=True)
class SourceErrors(JsonRecord):
    """How far one source's numbers were from what happened, on the reviewed customers with outcomes."""

    churn_brier: float | None  # None: no customer measured
    value_mae: float | None  # None: no customer measured, or the outcomes' value is not the predicted kind


@dataclass(frozen=True, kw_only=True)
class ReviewOutcomes(JsonRecord):
    """Earlier reviewers' decisions (decisions.csv of ``custseq plan --decisions``) against what happened after.

    A decision is measured once its label window [as-of + 1 day, as-of + horizon] has ended by this run's as-of
    date; ``errors`` compares custseq's, BG/NBD's and the reviewers' numbers (their override, or the source they
    chose) on the measured customers.
    """

    files: tuple[str, ...]
    decisions: int  # decided customers read
    measured: int  # whose label window has ended by this run's as-of date
    pending: int  # whose window has not ended yet
    before_data: int  # whose window starts before this run's data (no outcome)
    by_decision: dict[str, int]  # measured customers per decision (custseq, btyd, override)
    errors: dict[str, SourceErrors]  # "custseq", "btyd", "reviewers"
    overruled: int  # measured customers whose churn the reviewers changed (btyd or override)
    reviewers_closer: int  # of those, the reviewers' churn was closer to the outcome than custseq's
    custseq_closer: int  # … custseq's was closer (the rest: as close)
    recommendation: str  # one sentence, shown in the report
    calibration: str  # what of this went into the new predictor's calibration, and why


@dataclass(frozen=True, kw_only=True)
class Metrics(RunFile):
    """metrics.json of ``predict`` (every field) or ``score`` (no training fields; ``unknown_values``)."""

    file: ClassVar[str] = METRICS_FILE
    writer: ClassVar[str] = "custseq predict"

    as_of: str
    horizon_days: int
    customers_scored: int
    unknown_values: dict[str, int] | None = None  # score: values the model's vocabulary does not know, per field
    training_windows: tuple[str, ...] | None = None  # predict: as-of dates, latest first
    pretrained: bool | None = None  # predict
    validation: ValidationMetrics | None = None  # predict
    task_weighting: TaskWeighting | None = None  # predict
    calibration: str | None = None  # predict: the churn calibration method
    model_choice: ModelChoice | None = None  # predict: the candidates and the final predictor
    tables: dict[str, TableAccount]
    seconds: float
    backtest: BacktestMetrics | None = None  # when the horizon after the as-of date is in the data
    audit: AuditSummary | None = None  # predict with an output folder
    p_alive: BgNbdFit | PAliveUnavailable
    value_score: ValueScore
    actions: ActionSettings
    review_customers: int
    review_decisions: dict[str, int] | None = None  # reviewers' decisions applied by `custseq plan --decisions`
    review_outcomes: ReviewOutcomes | None = None  # predict with [audit] decisions_history: past decisions measured
    btyd_alone: str | None = None  # predict: why the predictions are BG/NBD + Gamma-Gamma's alone (no labels fit)
    prospects: ProspectSummary | None = None  # with an events table: people with events and no purchase yet


# --- profit.json -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProfitCurve(JsonRecord):
    """Expected campaign profit per number k of customers contacted, under each ordering (thinned)."""

    k: tuple[int, ...]
    share_contacted: tuple[float, ...]
    profit_saved_value: tuple[float, ...]
    profit_churn_probability: tuple[float, ...]
    profit_random: tuple[float, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per k, the columns in this order."""
        return pd.DataFrame({f.name: list(getattr(self, f.name)) for f in fields(self)}).astype({"k": "int64"})


@dataclass(frozen=True, kw_only=True)
class ProfitBest(JsonRecord):
    k: int  # the fewest contacts reaching the highest profit
    profit: float


@dataclass(frozen=True, kw_only=True)
class Profit(RunFile):
    file: ClassVar[str] = PROFIT_FILE
    writer: ClassVar[str] = "custseq predict"

    parameters: ProfitConfig
    customers: int
    curve: ProfitCurve
    best: dict[str, ProfitBest]  # ordering ("saved_value", "churn_probability", "random") -> its best k
    contacts_by_save_rate: dict[str, ProfitBest] | None = None  # another save rate -> contacts.csv's size, gain


# --- audit.json ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AuditGroupMetrics(JsonRecord):
    """Churn and value metrics of one set of labelled customers (``GroupMetrics`` of the fairness audit)."""

    n: int
    churn_auc: float | None  # None when all churned or none did
    mean_predicted_churn: float
    observed_churn: float
    calibration_gap: float
    mean_predicted_value: float
    mean_actual_value: float
    value_ratio: float | None  # None when the actual mean is 0
    segment_shares: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class AuditGroup(JsonRecord):
    """One group of an attribute; written flat: ``{"group", <its metrics>…, "flags"}``."""

    group: str
    metrics: AuditGroupMetrics
    flags: tuple[str, ...]  # why it is flagged; empty when it is not

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, **self.metrics.to_json(), "flags": list(self.flags)}

    @classmethod
    def decode(cls, data: Any, key: str) -> Self:
        if not isinstance(data, dict):
            raise InvalidRecord(key, f"must be a JSON object, got {type(data).__name__}")
        own = {k: data[k] for k in ("group", "flags") if k in data}
        rest = {k: v for k, v in data.items() if k not in own}
        return cast(Self, decode_fields(cls, {**own, "metrics": rest}, key))


@dataclass(frozen=True, kw_only=True)
class AuditAttribute(JsonRecord):
    attribute: str
    groups: tuple[AuditGroup, ...]


@dataclass(frozen=True, kw_only=True)
class BeforeAfter(JsonRecord):
    """A figure of the validation customers before and after the group corrections, cross-fitted (the mean of
    its value on two random halves, each corrected by what the other half fitted)."""

    before: float | None  # None where it is not defined (a value ratio without actual value, a one-class AUC)
    after: float | None


@dataclass(frozen=True, kw_only=True)
class AuditCorrection(JsonRecord):
    """One corrected group (``GroupCorrection``): what was fitted on all its validation customers, and how its
    calibration moved when each half was corrected by what the other half fitted."""

    attribute: str
    group: str
    n: int  # its validation customers
    churn_shift: float | None  # added to the churn logit; None: churn not corrected (its gap was not flagged)
    value_factor: float | None  # multiplies the expected value; None: value not corrected
    calibration_gap: BeforeAfter  # |mean predicted − observed churn|
    value_ratio_error: BeforeAfter  # |mean predicted / actual value − 1|


@dataclass(frozen=True, kw_only=True)
class AuditRecalibration(JsonRecord):
    """The group corrections of ``[audit] recalibrate_groups`` and their cross-fitted effect."""

    measured: str  # how the after figures were measured, in words
    groups: tuple[AuditCorrection, ...]
    overall_calibration_gap: BeforeAfter  # every validation customer
    overall_value_ratio_error: BeforeAfter
    overall_churn_auc: BeforeAfter


@dataclass(frozen=True, kw_only=True)
class Audit(RunFile):
    """audit.json: the bias audit of the validation customers (``Audit.to_json`` of the fairness module)."""

    file: ClassVar[str] = AUDIT_FILE
    writer: ClassVar[str] = "custseq predict"

    settings: AuditConfig
    labelled_customers: int
    overall: AuditGroupMetrics
    attributes: tuple[AuditAttribute, ...]
    flagged_groups: int
    recalibration: AuditRecalibration | None = None  # with [audit] recalibrate_groups only


# --- history.json ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EpochRecord(JsonRecord):
    """One epoch of training (``TrainResult.history``); written flat, ``metrics`` beside the fixed keys."""

    epoch: int
    train_loss: float
    val_loss: float | None  # None without validation
    lr: float
    grad_norm: float
    seconds: float
    items_per_s: float
    metrics: dict[str, float]  # train_<m> / val_<m> for every metric the model reports

    def to_json(self) -> dict[str, Any]:
        fixed = encode_fields(self)
        return {**{k: v for k, v in fixed.items() if k != "metrics"}, **fixed["metrics"]}

    @classmethod
    def decode(cls, data: Any, key: str) -> Self:
        if not isinstance(data, dict):
            raise InvalidRecord(key, f"must be a JSON object, got {type(data).__name__}")
        fixed = ("epoch", "train_loss", "val_loss", "lr", "grad_norm", "seconds", "items_per_s")
        own = {k: data[k] for k in fixed if k in data}
        return cast(Self, decode_fields(cls, {**own, "metrics": {k: v for k, v in data.items() if k not in own}}, key))


@dataclass(frozen=True, kw_only=True)
class History(RunFile):
    file: ClassVar[str] = HISTORY_FILE
    writer: ClassVar[str] = "custseq predict"

    pretrain: tuple[EpochRecord, ...]  # empty without pre-training
    finetune: tuple[EpochRecord, ...]


# --- attention.json --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AttentionSample(JsonRecord):
    customer_id: str
    events: tuple[str, ...]  # labels, oldest first
    weights: tuple[tuple[float, ...], ...]  # (layers, events): [CLS] attention averaged over heads
    churn_probability: float | None = None
    clv_expected: float | None = None
    segment: str | None = None


@dataclass(frozen=True, kw_only=True)
class Attention(RunFile):
    """attention.json: sample customers' attention, or a note when the encoder has none."""

    file: ClassVar[str] = ATTENTION_FILE
    writer: ClassVar[str] = "custseq predict"

    note: str | None = None  # why there is no attention to show
    layers: int | None = None
    customers: tuple[AttentionSample, ...]


# --- evaluation.json -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MeanStd(JsonRecord):
    mean: float
    std: float


@dataclass(frozen=True, kw_only=True)
class AucBootstrap(JsonRecord):
    difference: float
    low: float  # 95% interval
    high: float
    p_value: float


@dataclass(frozen=True, kw_only=True)
class Comparison(JsonRecord):
    """A method against its reference (custseq at the same label fraction): reference minus method."""

    reference: str
    churn_auc_difference: float
    churn_auc_p: float  # paired t-test over seeds
    value_gini_difference: float
    value_gini_p: float
    composite_difference: float
    composite_p: float
    auc_bootstrap: AucBootstrap  # paired bootstrap on the first seed's test customers


@dataclass(frozen=True, kw_only=True)
class EvaluationDetails(JsonRecord):
    test_customers: int
    test_churn_rate: float
    training_windows: tuple[int, ...]  # customers per training window
    label_fractions: tuple[float, ...]
    deterministic: tuple[str, ...]  # methods that ran once
    config: ModelConfig
    tables: dict[str, TableAccount]
    trained_horizon_days: int | None = None  # custseq's training horizon when none fitted the test horizon
    carried_by: str | None = None  # how custseq's predictions were carried to the test horizon


@dataclass(frozen=True, kw_only=True)
class EvaluationResult(RunFile):
    """evaluation.json of ``custseq evaluate``."""

    file: ClassVar[str] = EVALUATION_FILE
    writer: ClassVar[str] = "custseq evaluate"

    protocol: str
    as_of: str  # the test window's
    horizon_days: int
    seeds: tuple[int, ...]
    summary: dict[str, dict[str, MeanStd]]  # method -> metric -> over seeds
    per_seed: dict[str, tuple[dict[str, float], ...]]  # method -> metric -> value, per seed
    comparisons: dict[str, Comparison]
    skipped: dict[str, str]  # method -> why it did not run
    details: EvaluationDetails


# --- prepare.json ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PreparedWindow(JsonRecord):
    role: str  # "score", "validation" or "train"
    as_of: str
    cutoff: str
    label_end: str
    customers: int
    btyd_features: BgNbdFit | BtydFailed | None = None  # with features.btyd
    churn_rate: float | None = None  # labelled windows
    total_value: float | None = None
    labels: bool


@dataclass(frozen=True, kw_only=True)
class SequenceSummary(JsonRecord):
    token: str
    max_events: int
    categorical_fields: dict[str, int]  # field -> vocabulary size
    numeric_fields: tuple[str, ...]
    vocab_fitted_before: str


@dataclass(frozen=True, kw_only=True)
class PrepareSummary(RunFile):
    """prepare.json in a ``prepare`` output folder."""

    file: ClassVar[str] = PREPARE_FILE
    writer: ClassVar[str] = "custseq prepare"

    as_of: str
    horizon_days: int
    data_start: str
    data_end: str
    tables: dict[str, TableAccount]
    windows: tuple[PreparedWindow, ...]  # score, validation, then older training windows
    notes: tuple[str, ...] = ()  # one line each about the plan (absent in files of custseq before notes)
    sequence: SequenceSummary
    config: RunConfig
    timings_s: dict[str, float]


# --- run.json --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunFile):
    """run.json: the completeness marker of an output folder, written last, just before the folder is renamed
    into place (:func:`custseq.io.atomic.staged_output`)."""

    file: ClassVar[str] = RUN_FILE
    writer: ClassVar[str] = "custseq predict"

    custseq_version: str
    command: str  # "predict", "score", "evaluate" or "plan": the last command that wrote the folder
    inputs: str  # "sha256:…" of what it read: files' paths, sizes and times, frames' schema and rows, settings
    status: str  # "complete"
    started: str  # ISO 8601, UTC
    finished: str


# Every name custseq writes in an output folder: a folder holding only these may be replaced by a new run
RUN_FILES = frozenset({
    METRICS_FILE, PROFIT_FILE, AUDIT_FILE, HISTORY_FILE, ATTENTION_FILE, EVALUATION_FILE, EVALUATION_MARKDOWN_FILE,
    PREPARE_FILE, PREDICTIONS_FILE, PREDICTIONS_CSV_FILE, EMBEDDINGS_FILE, VALIDATION_FILE, TEST_PREDICTIONS_FILE,
    REVIEW_FILE, CONTACTS_FILE, DECISIONS_FILE, REPORT_FILE, RUN_FILE, MODEL_DIR, QUARANTINE_DIR,
})  # fmt: skip


# --- the folder ------------------------------------------------------------------------------------------------

Frame: TypeAlias = pd.DataFrame | pa.Table
F = TypeVar("F", bound=RunFile)


@dataclass(frozen=True)
class RunFolder:
    """Writes and reads every file of one run folder (or ``prepare`` output folder).

    Writers create the folder. JSON readers raise :class:`RunFileError` for a missing or malformed file or a
    format version other than :data:`FORMAT_VERSION`; table readers raise it for a missing or unreadable file.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def has(self, file: str) -> bool:
        return (self.path / file).is_file()

    # JSON files
    def write_metrics(self, metrics: Metrics) -> Path:
        return self._write_json(metrics)

    def read_metrics(self) -> Metrics:
        return self._read_json(Metrics)

    def write_profit(self, profit: Profit) -> Path:
        return self._write_json(profit)

    def read_profit(self) -> Profit:
        return self._read_json(Profit)

    def write_audit(self, audit: Audit) -> Path:
        return self._write_json(audit)

    def read_audit(self) -> Audit:
        return self._read_json(Audit)

    def write_history(self, history: History) -> Path:
        return self._write_json(history)

    def read_history(self) -> History:
        return self._read_json(History)

    def write_attention(self, attention: Attention) -> Path:
        return self._write_json(attention)

    def read_attention(self) -> Attention:
        return self._read_json(Attention)

    def write_evaluation(self, evaluation: EvaluationResult, markdown: str | None = None) -> Path:
        """evaluation.json, and evaluation.md when ``markdown`` is given."""
        if markdown is not None:
            self._target(EVALUATION_MARKDOWN_FILE).write_text(markdown)
        return self._write_json(evaluation)

    def read_evaluation(self) -> EvaluationResult:
        return self._read_json(EvaluationResult)

    def write_prepare_summary(self, summary: PrepareSummary) -> Path:
        return self._write_json(summary)

    def read_prepare_summary(self) -> PrepareSummary:
        return self._read_json(PrepareSummary)

    def write_run(self, record: RunRecord) -> Path:
        return self._write_json(record)

    def read_run(self) -> RunRecord:
        return self._read_json(RunRecord)

    # tables
    def write_predictions(self, predictions: Frame) -> Path:
        """predictions.parquet (full precision; :data:`LIST_COLUMNS` as lists of records) and, with the same rows,
        predictions.csv (rounded for reading; the list columns as JSON text)."""
        with self.predictions_writer() as writer:
            writer.write(predictions)
        return self.path / PREDICTIONS_FILE

    @contextlib.contextmanager
    def predictions_writer(self) -> Iterator[PredictionsWriter]:
        """:meth:`write_predictions` block by block, for predictions never held whole: ``writer.write(block)``
        for each block of rows, in order; the files are whole when the block ends without an error."""
        writer = PredictionsWriter(self._target(PREDICTIONS_FILE), self.path / PREDICTIONS_CSV_FILE)
        try:
            yield writer
            writer.finish()
        finally:
            writer.discard_parts()

    def read_predictions(self, lists: Literal["json", "arrow"] = "json") -> pd.DataFrame:
        """predictions.parquet (or .csv); :data:`LIST_COLUMNS` as JSON text, or with ``lists="arrow"`` as Arrow
        lists (``pandas.ArrowDtype``: no conversion, for readers of a million customers' plans such as the
        report)."""
        return self._read_table(PREDICTIONS_FILE, arrow_lists=lists == "arrow")

    def read_prediction_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of predictions.parquet (list columns as JSON text), the others not read."""
        path = self._existing(PREDICTIONS_FILE, "custseq predict")
        try:
            frame: pd.DataFrame = _with_json(pq.read_table(path, columns=list(columns))).to_pandas()
            return frame
        except (OSError, ValueError, TypeError, pa.ArrowException) as error:
            raise RunFileError(path, f"{type(error).__name__}: {error}") from None

    def write_embeddings(self, embeddings: Frame) -> Path:
        return self._write_parquet(EMBEDDINGS_FILE, embeddings)

    def write_embeddings_from(self, batches: pa.RecordBatchReader) -> Path:
        """embeddings.parquet from a stream of record batches (never all in memory)."""
        with pq.ParquetWriter(self._target(EMBEDDINGS_FILE), batches.schema) as parquet:
            for batch in batches:
                parquet.write_batch(batch)
        return self.path / EMBEDDINGS_FILE

    def read_embeddings(self) -> pd.DataFrame:
        return self._read_table(EMBEDDINGS_FILE)

    def write_validation(self, validation: Frame) -> Path:
        return self._write_parquet(VALIDATION_FILE, validation)

    def read_validation(self) -> pd.DataFrame:
        return self._read_table(VALIDATION_FILE)

    def write_test_predictions(self, test_predictions: Frame) -> Path:
        return self._write_parquet(TEST_PREDICTIONS_FILE, test_predictions)

    def read_test_predictions(self) -> pd.DataFrame:
        return self._read_table(TEST_PREDICTIONS_FILE)

    def write_review(self, review: pd.DataFrame) -> Path:
        write_csv(review, self._target(REVIEW_FILE))
        return self.path / REVIEW_FILE

    def read_review(self) -> pd.DataFrame:
        return self._read_table(REVIEW_FILE)

    def write_prospects(self, prospects: pd.DataFrame) -> Path:
        """prospects.csv: people with events and no purchase yet, scored by their own model (formula-safe)."""
        write_csv(prospects, self._target(PROSPECTS_CSV_FILE))
        return self.path / PROSPECTS_CSV_FILE

    def write_contacts(self, contacts: pd.DataFrame) -> Path:
        write_csv(contacts, self._target(CONTACTS_FILE))
        return self.path / CONTACTS_FILE

    def read_contacts(self) -> pd.DataFrame:
        return self._read_table(CONTACTS_FILE)

    # the work
    def _target(self, file: str) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path / file

    def _write_json(self, contents: RunFile) -> Path:
        path = self._target(contents.file)
        path.write_text(json.dumps(contents.to_json(), indent=1, allow_nan=False))
        return path

    def _read_json(self, contract: type[F]) -> F:
        path = self._existing(contract.file, contract.writer)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RunFileError(path, f"{type(error).__name__}: {error}") from None
        return contract.from_json(data, source=path)

    def _write_parquet(self, file: str, frame: Frame) -> Path:
        pq.write_table(_arrow(frame), self._target(file))
        return self.path / file

    def _read_table(self, file: str, *, arrow_lists: bool = False) -> pd.DataFrame:
        path = self._existing(file, "custseq evaluate" if file == TEST_PREDICTIONS_FILE else "custseq predict")
        try:
            if path.suffix == ".csv":
                return read_csv(path)
            table = pq.read_table(path)
            frame: pd.DataFrame = (
                table.to_pandas(types_mapper=_arrow_list_dtype) if arrow_lists else _with_json(table).to_pandas()
            )
            return frame
        except (OSError, ValueError, TypeError, pa.ArrowException) as error:
            raise RunFileError(path, f"{type(error).__name__}: {error}") from None

    def _existing(self, file: str, writer: str) -> Path:
        path = self.path / file
        if not path.is_file():
            raise RunFileError(path, f"is not in the folder; `{writer}` writes it")
        return path


WRITE_ROWS = 100_000  # predictions are written this many rows at a time (a Parquet row group, a CSV block)
PROBABILITY_COLUMNS = ("churn_probability", "p_alive")  # 4 decimals in CSV; other numbers 2 (money, scores)

# Columns holding a list of records per customer: JSON text in memory and in CSV, real lists in Parquet. The
# records' fields are whatever the writer put in them; these are the types when no row has one (all empty).
_ITEM = pa.struct([("item", pa.string()), ("probability", pa.float64())])
_ACTION = pa.struct(
    [("action", pa.string()), ("kind", pa.string()), ("item", pa.string()), ("probability", pa.float64())]
)
LIST_COLUMNS = {"next_items": pa.list_(_ITEM), "next_actions": pa.list_(_ACTION)}


class PredictionsWriter:
    """predictions.parquet and .csv written block by block (:meth:`RunFolder.predictions_writer`).

    Each block is cut into :data:`WRITE_ROWS` parts. A part's CSV rows are appended at once. Its Parquet rows,
    their list columns parsed into records, go to a part file beside the target, because the file's schema is
    known only at the end: a record field that only some parts have (a product's ``name``) is null in the others
    (:func:`_cast_to`). :meth:`finish` writes the parts into the target under that schema, one at a time.
    """

    def __init__(self, parquet: Path, csv: Path) -> None:
        self._parquet = parquet
        self._csv_path = csv
        self._parts_dir = parquet.with_name(f".{parquet.name}.parts")
        self._parts: list[Path] = []
        self._schemas: list[pa.Schema] = []
        self._csv: pacsv.CSVWriter | None = None
        self._columns: pa.Table | None = None  # an empty block: the columns of files without a row

    def write(self, block: Frame) -> None:
        """Append ``block``'s rows. The files are those of one :meth:`RunFolder.write_predictions` of all the
        rows when every block but the last holds a multiple of :data:`WRITE_ROWS` rows (else the same rows in
        other row groups); an empty block adds no row, only the columns written if no block has a row."""
        table = _arrow(block)
        if table.num_rows == 0 and self._columns is None:
            self._columns = table
        for start in range(0, table.num_rows, WRITE_ROWS):
            self._write_part(table.slice(start, WRITE_ROWS))

    def _write_part(self, part: pa.Table) -> None:
        lists = _with_lists(part)
        self._parts_dir.mkdir(exist_ok=True)
        path = self._parts_dir / f"{len(self._parts)}.parquet"
        pq.write_table(lists, path)
        self._parts.append(path)
        self._schemas.append(lists.schema)
        rows = _neutralised_table(_rounded(part))
        if self._csv is None:
            self._csv = pacsv.CSVWriter(self._csv_path, rows.schema)
        self._csv.write_table(rows)

    def finish(self) -> None:
        if not self._parts:
            if self._columns is None:
                raise ValueError("no predictions were written: write at least one (possibly empty) block")
            self._write_part(self._columns)
        cast(pacsv.CSVWriter, self._csv).close()
        self._csv = None
        schema = pa.unify_schemas(self._schemas, promote_options="permissive")
        with pq.ParquetWriter(self._parquet, schema) as parquet:
            for path in self._parts:
                parquet.write_table(_cast_to(pq.read_table(path), schema))

    def discard_parts(self) -> None:
        if self._csv is not None:
            self._csv.close()
        shutil.rmtree(self._parts_dir, ignore_errors=True)


def _with_lists(table: pa.Table) -> pa.Table:
    """:data:`LIST_COLUMNS` parsed from JSON text into Arrow lists of structs."""
    for name, empty_type in LIST_COLUMNS.items():
        i = table.schema.get_field_index(name)
        if i < 0 or not (pa.types.is_string(t := table.schema.field(i).type) or pa.types.is_large_string(t)):
            continue
        texts = table.column(i).to_pylist()
        column = parse_json_texts(texts)
        if pa.types.is_null(column.type) or pa.types.is_null(column.type.value_type):
            column = pa.array([None if text is None else json.loads(text) for text in texts], empty_type)
        else:
            column = column.cast(_typed_nulls(column.type))
        table = table.set_column(i, name, column)
    return table.replace_schema_metadata(None)  # pandas' metadata would still call them text


def _cast_to(part: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part of one table whose list columns were parsed apart, cast to the schema unified over all parts (a
    record field that only some parts' rows have, e.g. a product's ``name``, is null in the others)."""
    return part if part.schema == schema else part.cast(schema)


def _typed_nulls(list_type: pa.DataType) -> pa.DataType:
    """The list-of-struct type with each all-null field typed (a probability is a number, the rest text)."""
    struct = list_type.value_type
    typed = [
        f.with_type(pa.float64() if f.name == "probability" else pa.string()) if pa.types.is_null(f.type) else f
        for f in struct
    ]
    return pa.list_(pa.struct(typed))


def _arrow_list_dtype(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) else None


def _with_json(table: pa.Table) -> pa.Table:
    """:data:`LIST_COLUMNS` stored as lists, turned back into the JSON text the rest of custseq reads."""
    for name in LIST_COLUMNS:
        i = table.schema.get_field_index(name)
        if i < 0 or not pa.types.is_list(table.schema.field(i).type):
            continue
        texts = [None if v is None else json.dumps(v, ensure_ascii=False) for v in table.column(i).to_pylist()]
        table = table.set_column(i, name, pa.array(texts, pa.string()))
    return table


def _rounded(table: pa.Table) -> pa.Table:
    """Floating-point columns rounded for a CSV reader: probabilities to 4 decimals, the rest to 2 (not
    590.6019287109375)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_floating(f.type):
            digits = 4 if f.name in PROBABILITY_COLUMNS else 2
            table = table.set_column(i, f.name, pc.round(table.column(i), digits))
    return table


def _arrow(frame: Frame) -> pa.Table:
    return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)


# --- CSV cells a spreadsheet would run -------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: a spreadsheet may read such a cell as a formula
QUOTE = "'"


def neutralised(text: str) -> str:
    """``text`` with a leading ``'`` if it starts like a formula (or with a ``'``, so that :func:`restored` can
    tell); other text unchanged."""
    return QUOTE + text if text.startswith((*FORMULA_STARTS, QUOTE)) else text


def restored(text: str) -> str:
    """The text :func:`neutralised` was given (a cell a spreadsheet saved without the quote is unchanged)."""
    return text[1:] if text.startswith(QUOTE) and text[1:].startswith((*FORMULA_STARTS, QUOTE)) else text


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A frame as CSV, its text cells :func:`neutralised` (numbers, negative ones too, unchanged)."""
    text = {c: _map_text(frame[c], neutralised) for c in _text_columns(frame)}
    # Python's csv module quotes a cell holding a carriage return only when it ends lines with one: quote text
    carriage_return = any(isinstance(cell, str) and "\r" in cell for column in text.values() for cell in column)
    quoting: Literal[0, 2] = csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL
    frame.assign(**text).to_csv(path, index=False, quoting=quoting)


def read_csv(path: Path | str) -> pd.DataFrame:
    """A CSV custseq wrote, its text cells :func:`restored` (``customer_id`` always text)."""
    frame = pd.read_csv(path, dtype={"customer_id": str})
    return frame.assign(**{c: _map_text(frame[c], restored) for c in _text_columns(frame)})


def _text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that may hold text: object, string and categorical ones (numbers are never changed)."""
    return [
        str(c) for c in frame.columns
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
        or isinstance(frame[c].dtype, pd.CategoricalDtype)
    ]  # fmt: skip


def _map_text(column: pd.Series, change: Callable[[str], str]) -> pd.Series:
    return column.astype(object).map(lambda v: change(v) if isinstance(v, str) else v)


def _neutralised_table(table: pa.Table) -> pa.Table:
    """:func:`neutralised` on every text column of an Arrow table (nulls stay null)."""
    starts = "^[" + re.escape("".join(FORMULA_STARTS) + QUOTE) + "]"
    for i, f in enumerate(table.schema):
        kind = f.type.value_type if pa.types.is_dictionary(f.type) else f.type  # categories: their text
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = table.column(i).cast(kind)
            quoted = pc.binary_join_element_wise(pa.scalar(QUOTE, kind), column, pa.scalar("", kind))
            table = table.set_column(i, f.name, pc.if_else(pc.match_substring_regex(column, starts), quoted, column))
    return table
