"""Every setting custseq has, as frozen dataclasses, and how they are read from files and strings.

Configs are never edited in place: derive a new one with :func:`dataclasses.replace`. A config file
(TOML or JSON) has one section per dataclass field of :class:`RunConfig`, e.g.::

    [columns.transactions]
    customer_id = "CustomerID"
    amount = "Quantity*UnitPrice"

    [window]
    horizon_days = 90
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from custseq.errors import ConfigError

HORIZON_UNITS_DAYS = {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.0}


def parse_horizon(text: str | int) -> int:
    """Parse a horizon (``90d``, ``13w``, ``6m``, ``1y`` or a number of days) into whole days.

    Months are 365.25/12 days and years 365 days, rounded to the nearest day (``6m`` = 183 days).

    Raises
    ------
    ConfigError
        If the text is not a positive number with an optional unit d/w/m/y.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        days = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*", str(text).lower())
        if not m:
            raise ConfigError(
                f"horizon {text!r} is not understood; write a number of days or a number with a unit, "
                "e.g. 90d, 13w, 6m or 1y"
            )
        days = round(float(m.group(1)) * HORIZON_UNITS_DAYS[m.group(2) or "d"])
    if days < 1:
        raise ConfigError(f"horizon must be at least one day, got {text!r}")
    return int(days)


def parse_date(text: str | dt.date | dt.datetime, what: str = "date") -> dt.date:
    """Parse an ISO date (``1997-09-30``); a datetime is reduced to its date."""
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        text = str(text).strip()
        return dt.date.fromisoformat(text) if len(text) <= 10 else dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a date; write it as YYYY-MM-DD, e.g. 1997-09-30") from None


@dataclass(frozen=True)
class ColumnsConfig:
    """Source column for each canonical column, per table (``{"customer_id": "CustomerID"}``).

    A transactions ``amount`` may be a product of two columns, ``"Quantity*UnitPrice"``.
    Columns not named here are detected from their names (see :mod:`custseq.schema`).
    """

    transactions: dict[str, str] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    detect: bool = True  # detect obvious names (CustomerID, InvoiceDate, ...) for unmapped columns


@dataclass(frozen=True)
class ValidationConfig:
    """Row-level rules: what sends a row to quarantine."""

    max_abs_amount: float = 1e9  # |amount| above this is treated as a data error
    # "auto": quarantine exact duplicate rows unless timestamps are dates only and there is no order id,
    # where two identical rows are indistinguishable from two real purchases on one day.
    duplicates: Literal["auto", "quarantine", "keep"] = "auto"
    future_rows: Literal["keep", "quarantine"] = "keep"  # "quarantine": rows after as_of must not exist
    currencies: tuple[str, ...] | None = None  # accepted currency codes; None = ISO 4217
    ts_format: str | None = None  # strptime format of text timestamps; None = detect

    def __post_init__(self) -> None:
        if not self.max_abs_amount > 0:
            raise ConfigError(f"max_abs_amount must be positive, got {self.max_abs_amount}")
        if self.duplicates not in ("auto", "quarantine", "keep"):
            raise ConfigError(f"duplicates must be auto, quarantine or keep, got {self.duplicates!r}")
        if self.future_rows not in ("keep", "quarantine"):
            raise ConfigError(f"future_rows must be keep or quarantine, got {self.future_rows!r}")


@dataclass(frozen=True)
class WindowConfig:
    """The time protocol (DESIGN §3): scoring date, horizon and training cutoffs."""

    as_of: dt.date | None = None  # inclusive; None = the last day in the data
    horizon_days: int = 90
    stride_days: int | None = None  # between training cutoffs; None = horizon
    max_train_windows: int | None = None  # None = as many as history allows
    min_history_days: int = 30  # a training cutoff needs this much history before it
    # False: a plan without any training window is allowed (evaluate's label-free methods, e.g. BTYD, still run)
    require_training: bool = True

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise ConfigError(f"horizon_days must be at least 1, got {self.horizon_days}")
        if self.stride_days is not None and self.stride_days < 1:
            raise ConfigError(f"stride_days must be at least 1, got {self.stride_days}")
        if self.max_train_windows is not None and self.max_train_windows < 1:
            raise ConfigError(f"max_train_windows must be at least 1, got {self.max_train_windows}")
        if self.min_history_days < 0:
            raise ConfigError(f"min_history_days must be >= 0, got {self.min_history_days}")


@dataclass(frozen=True)
class FeatureConfig:
    """Tabular (RFM and behaviour) features."""

    recent_windows_days: tuple[int, ...] = (30, 90, 180)  # counts and spend in the last N days
    # BG/NBD fitted on each window's own RFM summary adds btyd_p_alive and btyd_expected_purchases (per
    # horizon) as features; off by default until it is measured to help
    btyd: bool = False

    def __post_init__(self) -> None:
        if not self.recent_windows_days or min(self.recent_windows_days) < 1:
            raise ConfigError(f"recent_windows_days must be positive days, got {self.recent_windows_days}")


@dataclass(frozen=True)
class SequenceConfig:
    """Per-customer event sequences."""

    max_events: int = 256  # the last L events before the cutoff are kept
    # "order": one token per order (lines aggregated); "line": one per row; "auto": order if order_id exists
    token: Literal["auto", "order", "line"] = "auto"
    min_count: int = 5  # categorical values seen fewer times in training rows share the unknown id
    max_vocab: int = 20_000  # per field, most frequent first
    max_category_share: float = 0.5  # an extra text column with more distinct values per row is an id, not a field
    shard_customers: int = 100_000  # customers per Parquet shard

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ConfigError(f"max_events must be at least 1, got {self.max_events}")
        if self.token not in ("auto", "order", "line"):
            raise ConfigError(f"token must be auto, order or line, got {self.token!r}")
        if self.min_count < 1 or self.max_vocab < 1 or self.shard_customers < 1:
            raise ConfigError("min_count, max_vocab and shard_customers must be at least 1")


@dataclass(frozen=True)
class EngineConfig:
    """The embedded DuckDB engine."""

    threads: int | None = None  # None = DuckDB's default (all cores)
    memory_limit: str | None = None  # e.g. "4GB"; None = DuckDB's default
    temp_directory: str | None = None  # where DuckDB spills when memory runs short


@dataclass(frozen=True)
class EncoderConfig:
    """The sequence encoder (DESIGN §5): event embedding, pre-LayerNorm Transformer, pooling."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.3  # SeqPreMT setting
    max_events: int = 64  # the last L tokens a customer's sequence is cut to (16-64 measured as good as 128)
    pooling: Literal["mean", "cls", "mean+cls"] = "mean+cls"  # mean+cls: the average of both
    max_category_dim: int = 64  # per-field embedding dim = min(this, ceil(sqrt(cardinality)) + 1)
    kind: Literal["transformer", "lstm"] = "transformer"  # lstm: the LSTM baseline's encoder, same event embedding

    def __post_init__(self) -> None:
        if self.kind not in ("transformer", "lstm"):
            raise ConfigError(f"encoder kind must be transformer or lstm, got {self.kind!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if min(self.d_model, self.n_heads, self.n_layers, self.d_ff, self.max_events, self.max_category_dim) < 1:
            raise ConfigError("d_model, n_heads, n_layers, d_ff, max_events and max_category_dim must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pooling not in ("mean", "cls", "mean+cls"):
            raise ConfigError(f"pooling must be mean, cls or mean+cls, got {self.pooling!r}")


PRETRAIN_OBJECTIVES = ("masked", "next", "contrastive")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised objectives (SeqPreMT: masked 15% + 0.3 x next event; CASPR: 30%, zero-vector masks)."""

    objectives: tuple[str, ...] = ("masked", "next")
    mask_rate: float = 0.15
    mask_style: Literal["token", "zero"] = "token"  # token: the [MASK] id; zero: CASPR's zero vector
    next_weight: float = 0.3  # λ1
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.1
    contrastive_min_fraction: float = 0.5  # CoLES-style slices keep at least this share of the events

    def __post_init__(self) -> None:
        if not self.objectives or set(self.objectives) - set(PRETRAIN_OBJECTIVES):
            raise ConfigError(f"objectives must be a non-empty subset of {PRETRAIN_OBJECTIVES}, got {self.objectives}")
        if not 0 < self.mask_rate < 1:
            raise ConfigError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.mask_style not in ("token", "zero"):
            raise ConfigError(f"mask_style must be token or zero, got {self.mask_style!r}")
        if min(self.next_weight, self.contrastive_weight) < 0 or self.contrastive_temperature <= 0:
            raise ConfigError("objective weights must be >= 0 and the temperature > 0")
        if not 0 < self.contrastive_min_fraction <= 1:
            raise ConfigError(f"contrastive_min_fraction must be in (0, 1], got {self.contrastive_min_fraction}")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop shared by pre-training and every fine-tuning (SeqPreMT settings by default)."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # linear warm-up, then cosine decay
    grad_accumulation: int = 1
    clip_norm: float = 1.0
    patience: int = 15  # epochs without a validation improvement of at least min_delta
    min_delta: float = 1e-4
    seed: int = 0
    device: str = "auto"  # auto: CUDA when present, else CPU
    mixed_precision: bool = True  # on CUDA only

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.grad_accumulation, self.patience) < 1:
            raise ConfigError("epochs, batch_size, grad_accumulation and patience must be >= 1")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.clip_norm <= 0 or self.min_delta < 0:
            raise ConfigError("learning_rate and clip_norm must be > 0; weight_decay and min_delta >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


@dataclass(frozen=True)
class FinetuneConfig:
    """The multi-task churn + value model on top of the encoder (SeqPreMT; tabular concatenation from CASPR)."""

    value_loss: Literal["ziln", "smooth_l1"] = "ziln"  # ZILN measured better than Smooth L1 (MODEL-NOTES)
    weighting: Literal["uncertainty", "fixed", "variance"] = "uncertainty"
    fixed_weights: tuple[float, float] = (1.0, 1.0)  # churn, value (weighting = "fixed")
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    use_tabular: bool = True
    use_sequence: bool = True
    trunk_dim: int = 64
    dropout: float = 0.3
    # full: the encoder trains with the heads; frozen: it does not; discriminative: it trains at
    # encoder_lr_scale times the heads' learning rate (ULMFiT-style discriminative learning rates)
    encoder_mode: Literal["full", "frozen", "discriminative"] = "full"
    encoder_lr_scale: float = 0.1
    # class imbalance of churn: none; class_weight (both classes weigh the same in total); oversample (the
    # minority class is drawn more often, by resampling each batch with those weights)
    imbalance: Literal["none", "class_weight", "oversample"] = "none"
    value_reweight: bool = False  # SeqPreMT: weight customers by 1 + log1p(value) / mean log1p(positive value)
    calibration: Literal["auto", "isotonic", "platt", "none"] = "auto"  # auto: isotonic from 1000 validation rows
    validation_fraction: float = 0.2  # customers of the latest training window held out for validation
    # customers held out of training and validation altogether (evaluate's customer-split protocol: 0.15)
    test_fraction: float = 0.0
    label_fraction: float = 1.0  # share of the training customers (stable id hash) whose labels are used

    def __post_init__(self) -> None:
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if not 0 <= self.test_fraction < 1 or self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError("test_fraction must be >= 0 and validation_fraction + test_fraction < 1")
        if self.value_loss not in ("ziln", "smooth_l1"):
            raise ConfigError(f"value_loss must be ziln or smooth_l1, got {self.value_loss!r}")
        if self.weighting not in ("uncertainty", "fixed", "variance"):
            raise ConfigError(f"weighting must be uncertainty, fixed or variance, got {self.weighting!r}")
        if self.encoder_mode not in ("full", "frozen", "discriminative"):
            raise ConfigError(f"encoder_mode must be full, frozen or discriminative, got {self.encoder_mode!r}")
        if self.imbalance not in ("none", "class_weight", "oversample"):
            raise ConfigError(f"imbalance must be none, class_weight or oversample, got {self.imbalance!r}")
        if self.calibration not in ("auto", "isotonic", "platt", "none"):
            raise ConfigError(f"calibration must be auto, isotonic, platt or none, got {self.calibration!r}")
        if not 0 < self.validation_fraction < 1 or self.encoder_lr_scale <= 0:
            raise ConfigError("validation_fraction must be in (0, 1) and encoder_lr_scale > 0")
        if not (self.use_tabular or self.use_sequence):
            raise ConfigError("the model needs the sequence, the tabular features, or both")
        if self.focal_gamma < 0 or not 0 < self.focal_alpha < 1 or self.trunk_dim < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("focal_gamma >= 0, 0 < focal_alpha < 1, trunk_dim >= 1 and 0 <= dropout < 1 required")
        if len(self.fixed_weights) != 2 or min(self.fixed_weights) < 0:
            raise ConfigError(f"fixed_weights takes two weights >= 0, got {self.fixed_weights}")


@dataclass(frozen=True)
class ModelConfig:
    """What `predict` trains: an optional self-supervised pre-training, then the multi-task fine-tuning.

    Training defaults are sized for a laptop (minutes on CDNOW's 23,570 customers on 2 cores): a few
    pre-training epochs (pre-training added <= 0.002 AUC with all labels, MODEL-NOTES) and up to 30
    fine-tuning epochs ended by early stopping on the validation composite (with 10, the best epoch was
    the last ones and the validation composite lower: CDNOW 0.568 vs 0.571, Online Retail 0.634 vs 0.664).
    """

    pretraining: bool = True
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    pretrain_training: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, patience=2))
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    finetune_training: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, patience=4))


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the baselines `evaluate` compares custseq with (fixed, never tuned on a test window).

    The gradient-boosting models (LightGBM, XGBoost) use ``*_n_estimators`` rounds unless ``cohort_cv`` picks
    the number: cross-validation with folds grouped by signup cohort (the ``cohort_period`` of a customer's
    first purchase), early stopping on each fold's held-out cohorts, then a refit on all rows with the mean
    best round. With fewer distinct cohorts than ``cv_folds`` it falls back to ``*_n_estimators``.
    """

    lgbm_n_estimators: int = 300
    lgbm_learning_rate: float = 0.05
    lgbm_num_leaves: int = 31
    lgbm_min_child_samples: int = 20
    lgbm_subsample: float = 0.8
    lgbm_subsample_freq: int = 1
    lgbm_colsample_bytree: float = 0.8
    xgb_n_estimators: int = 300
    xgb_learning_rate: float = 0.05
    xgb_max_depth: int = 6
    xgb_min_child_weight: float = 1.0
    xgb_subsample: float = 0.8
    xgb_colsample_bytree: float = 0.8
    tweedie_variance_power: float = 1.5  # Tweedie value losses of LightGBM and XGBoost (both libraries' default)
    rf_n_estimators: int = 300
    rf_min_samples_leaf: int = 20
    n_jobs: int = -1  # threads of every baseline model; -1 = all cores
    cohort_cv: bool = True
    cohort_period: Literal["month", "quarter"] = "month"  # quarter leaves CDNOW (one quarter of signups) one cohort
    cv_folds: int = 3  # CDNOW has three monthly cohorts
    cv_max_rounds: int = 2000  # the ceiling early stopping works under
    cv_early_stopping_rounds: int = 50
    # Cohort exponential smoothing: revenue per period of smoothing_period_days counted back from the cutoff;
    # a damped Holt trend needs smoothing_min_periods_trend periods, shorter series get simple smoothing
    smoothing_period_days: int = 30
    smoothing_min_periods_trend: int = 8
    smoothing_damped_trend: bool = True

    def __post_init__(self) -> None:
        counts = {
            name: getattr(self, name)
            for name in ("lgbm_n_estimators", "lgbm_num_leaves", "lgbm_min_child_samples", "xgb_n_estimators",
                         "xgb_max_depth", "rf_n_estimators", "rf_min_samples_leaf", "cv_max_rounds",
                         "cv_early_stopping_rounds", "smoothing_period_days")
        }  # fmt: skip
        if too_small := {name: value for name, value in counts.items() if value < 1}:
            raise ConfigError(f"baseline settings {too_small} must be at least 1")
        for name in ("lgbm_learning_rate", "xgb_learning_rate", "lgbm_subsample", "lgbm_colsample_bytree",
                     "xgb_subsample", "xgb_colsample_bytree"):  # fmt: skip
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.lgbm_subsample_freq < 0 or self.xgb_min_child_weight < 0:
            raise ConfigError("lgbm_subsample_freq and xgb_min_child_weight must be >= 0")
        if not 1 < self.tweedie_variance_power < 2:
            raise ConfigError(f"tweedie_variance_power must be in (1, 2), got {self.tweedie_variance_power}")
        if self.n_jobs == 0 or self.n_jobs < -1:
            raise ConfigError(f"n_jobs must be -1 (all cores) or at least 1, got {self.n_jobs}")
        if self.cohort_period not in ("month", "quarter"):
            raise ConfigError(f"cohort_period must be month or quarter, got {self.cohort_period!r}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.smoothing_min_periods_trend < 4:
            raise ConfigError(
                f"smoothing_min_periods_trend must be at least 4 (a damped trend has 5 parameters), "
                f"got {self.smoothing_min_periods_trend}"
            )


@dataclass(frozen=True)
class SegmentConfig:
    """Thresholds of the segment rules (:mod:`custseq.scoring.segments`); churn thresholds are probabilities."""

    top_value_share: float = 0.2  # the top value tier: the highest expected values, at most this share of customers
    attrier_churn: float = 0.65  # high-value potential attrier: top tier and churn above this (DESIGN §1)
    champion_max_churn: float = 0.35  # champion: top tier and churn at most this
    at_risk_churn: float = 0.5  # churn above this is at risk or hibernating (the engagement plan's threshold)
    loyal_min_frequency: int = 2  # loyal: at least this many repeat purchase days and churn at most at_risk_churn
    new_customer_days: int | None = None  # new: first purchase fewer than this many days ago; None = the horizon
    hibernating_days: int | None = None  # hibernating: at risk and no purchase in this many days; None = the horizon

    def __post_init__(self) -> None:
        if not 0 < self.top_value_share <= 1:
            raise ConfigError(f"top_value_share must be in (0, 1], got {self.top_value_share}")
        for name in ("attrier_churn", "champion_max_churn", "at_risk_churn"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.champion_max_churn > self.at_risk_churn:
            raise ConfigError(
                f"champion_max_churn ({self.champion_max_churn}) must not exceed at_risk_churn ({self.at_risk_churn}): "
                "a champion would be likelier to churn than a customer at risk"
            )
        if self.loyal_min_frequency < 1:
            raise ConfigError(f"loyal_min_frequency must be at least 1, got {self.loyal_min_frequency}")
        for name in ("new_customer_days", "hibernating_days"):
            days = getattr(self, name)
            if days is not None and days < 1:
                raise ConfigError(f"{name} must be at least 1 day (or unset for the horizon), got {days}")


@dataclass(frozen=True)
class ValueScoreConfig:
    """The composite value score (:mod:`custseq.scoring.scores`): V's weights and the HyperScore boost.

    value_score = 100 · [1 + σ(beta · ln V + gamma)^kappa], V = the weighted mean of the rank-normalised
    expected value, retention (1 − churn) and engagement (purchase days in the last horizon).
    """

    value_weight: float = 0.5  # the value a customer brings is what the score ranks first
    retention_weight: float = 0.3
    engagement_weight: float = 0.2
    beta: float = 5.0  # sensitivity: how sharply the boost rises towards V = 1
    gamma: float = -math.log(2)  # the bias: σ(gamma) = 1/3 at V = 1
    kappa: float = 2.0  # the power of the boost

    def __post_init__(self) -> None:
        weights = {name: getattr(self, name) for name in ("value_weight", "retention_weight", "engagement_weight")}
        if min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ConfigError(f"value score weights must be >= 0 with a positive sum, got {weights}")
        if not self.beta > 0 or not self.kappa > 0:
            raise ConfigError(
                f"beta and kappa must be > 0 for the score to rise with V, got beta={self.beta}, kappa={self.kappa}"
            )
        if not math.isfinite(self.gamma):
            raise ConfigError(f"gamma must be a finite number, got {self.gamma}")


@dataclass(frozen=True)
class ProfitConfig:
    """The retention campaign of the profit simulation (:mod:`custseq.scoring.profit`), in the data's currency.

    Defaults follow the churn campaign of Verbraken, Verbeke & Baesens (2013), IEEE TKDE 25(5): contact cost 1,
    offer cost 10, a mean share of 0.3 of contacted would-be churners kept, and every contacted non-churner
    redeeming the offer. Set them to the business's own numbers.
    """

    contact_cost: float = 1.0  # per customer contacted
    offer_cost: float = 10.0  # per offer redeemed
    save_rate: float = 0.3  # share of contacted would-be churners the offer keeps
    take_rate: float = 1.0  # share of contacted non-churners who redeem the offer anyway (wasted); 0 = none
    max_value_multiplier: float = 20.0  # without clv_if_active: value if retained = clv_expected / (1 − churn), capped

    def __post_init__(self) -> None:
        if min(self.contact_cost, self.offer_cost) < 0:
            raise ConfigError(
                f"contact_cost and offer_cost must be >= 0, got {self.contact_cost} and {self.offer_cost}"
            )
        for name in ("save_rate", "take_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")
        if not self.max_value_multiplier >= 1:
            raise ConfigError(f"max_value_multiplier must be at least 1, got {self.max_value_multiplier}")


@dataclass(frozen=True)
class ActionConfig:
    """Next-best-action plans (:mod:`custseq.scoring.actions`).

    A customer whose churn probability is strictly above ``retention_threshold`` gets retention actions from
    the catalogue (``retention_flag`` true); everyone else gets the next-event model's ``k`` likeliest items,
    topped up with the catalogue's growth actions when the model proposes fewer.
    """

    k: int = 3  # actions per customer
    retention_threshold: float = 0.5  # churn probability above which the plan switches to retention actions
    mode: Literal["replace", "augment"] = "replace"  # augment: the top retention action, then the model's items
    item_field: str = "auto"  # the token field the next-event head proposes; auto = product, category, event, channel
    catalogue: str | None = None  # path of a JSON or YAML action catalogue; None = the one shipped with custseq

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if not 0 <= self.retention_threshold <= 1:
            raise ConfigError(f"retention_threshold must be a probability in [0, 1], got {self.retention_threshold}")
        if self.mode not in ("replace", "augment"):
            raise ConfigError(f"mode must be replace or augment, got {self.mode!r}")


@dataclass(frozen=True)
class AuditConfig:
    """The bias audit (:mod:`custseq.evaluation.fairness`) and the human-review list.

    A group is flagged when one of its metrics differs from the whole population's by more than the tolerance;
    groups smaller than ``min_group_size`` are reported but never flagged (their metrics are noise).
    """

    columns: tuple[str, ...] | None = None  # profile columns to audit; None = every profile column, and tenure
    bins: int = 4  # numeric columns are cut into this many quantile bins
    max_groups: int = 12  # categorical columns keep their most frequent values; the rest become "other"
    min_group_size: int = 50
    auc_tolerance: float = 0.05  # |group churn AUC − overall|
    calibration_tolerance: float = 0.05  # |(mean predicted − observed churn) in the group − the same overall|
    value_tolerance: float = 0.25  # |group mean predicted / actual value − the same overall ratio|
    segment_share_tolerance: float = 0.15  # |a segment's share in the group − its share overall|
    review_churn_gap: float = 0.5  # review.csv: |custseq churn − BG/NBD churn| at least this
    review_value_ratio: float = 5.0  # review.csv: custseq and BG/NBD values differ by at least this factor
    review_min_value: float = 1.0  # … where the larger of the two values is at least this (currency units)

    def __post_init__(self) -> None:
        if self.bins < 2 or self.max_groups < 2 or self.min_group_size < 1:
            raise ConfigError("bins and max_groups must be at least 2 and min_group_size at least 1")
        for name in ("auc_tolerance", "calibration_tolerance", "value_tolerance", "segment_share_tolerance"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.review_churn_gap <= 1 or not self.review_value_ratio > 1:
            raise ConfigError("review_churn_gap must be in (0, 1] and review_value_ratio above 1")


@dataclass(frozen=True)
class ReportConfig:
    """The HTML report (:mod:`custseq.report`)."""

    enabled: bool = True  # predict and evaluate write report.html next to their outputs
    map_customers: int = 2000  # customers in the 2-D embedding map (a stable sample; t-SNE is quadratic)
    attention_customers: int = 4  # sample customers whose attention heat-maps are shown
    attention_events: int = 32  # their latest events shown
    interactive: bool = True  # inline Plotly (about 5 MB) for the interactive figures; static SVG otherwise

    def __post_init__(self) -> None:
        if self.map_customers < 10 or self.attention_customers < 0 or self.attention_events < 1:
            raise ConfigError("map_customers must be at least 10, attention_customers >= 0, attention_events >= 1")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run: the data settings `prepare` needs, and the model `predict` trains."""

    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    value_score: ValueScoreConfig = field(default_factory=ValueScoreConfig)
    profit: ProfitConfig = field(default_factory=ProfitConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def with_seed(cfg: RunConfig, seed: int | None) -> RunConfig:
    """The config with every training seed set to ``seed`` (unchanged with None)."""
    if seed is None:
        return cfg
    m = cfg.model
    model = dataclasses.replace(
        m,
        pretrain_training=dataclasses.replace(m.pretrain_training, seed=seed),
        finetune_training=dataclasses.replace(m.finetune_training, seed=seed),
    )
    return dataclasses.replace(cfg, model=model)


def with_window(cfg: RunConfig, *, as_of: Any = None, horizon: str | int | None = None) -> RunConfig:
    """The config with the as-of date and the horizon set where given (``None`` keeps the config's)."""
    window = cfg.window
    if as_of is not None:
        window = dataclasses.replace(window, as_of=parse_date(as_of, "as-of"))
    if horizon is not None:
        window = dataclasses.replace(window, horizon_days=parse_horizon(horizon))
    return dataclasses.replace(cfg, window=window)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (dates as ISO strings, tuples as lists)."""

    def default(o: Any) -> Any:
        if isinstance(o, dt.date):
            return o.isoformat()
        raise TypeError(type(o))

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=default))


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build a config dataclass from a plain dict, converting nested sections, tuples and dates.

    Raises
    ------
    ConfigError
        On an unknown key (naming the allowed ones) or a value of the wrong shape.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"unknown setting(s) {unknown} in {where}; allowed: {sorted(known)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]) and fields[name].default_factory is not dataclasses.MISSING:
            # A partial section changes only the settings it names, starting from this field's own default
            # (ModelConfig's training defaults differ from TrainConfig's).
            built = config_from_dict(hints[name], value, f"{where}.{name}")
            given = {key: getattr(built, key) for key in value}
            kwargs[name] = dataclasses.replace(fields[name].default_factory(), **given)
        else:
            kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    if where.endswith(".horizon_days"):
        return parse_horizon(value)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if hint is dt.date or dt.date in args:
        return parse_date(value, where)
    if origin is tuple or any(typing.get_origin(a) is tuple for a in args):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if (
        origin in (typing.Union, types.UnionType)
        and args
        and args[0] in (int, float)
        and not isinstance(value, int | float)
    ):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return value


def load_config(path: Path, base: RunConfig | None = None) -> RunConfig:
    """Read a :class:`RunConfig` from a TOML or JSON file; settings it does not name keep ``base``'s values
    (default: :class:`RunConfig`'s defaults).

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or holds unknown settings.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {Path(path).suffix.lstrip('.') or 'TOML'}: {e}") from None
    if base is None:
        return config_from_dict(RunConfig, data, where=str(path))
    return config_from_dict(RunConfig, _deep_merge(config_to_dict(base), data), where=str(path))


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        inner = merged.get(key)
        merged[key] = _deep_merge(inner, value) if isinstance(inner, dict) and isinstance(value, dict) else value
    return merged


def apply_settings(cfg: Any, changes: dict[str, Any]) -> Any:
    """``cfg`` with typed values set by section: ``{"window": {"horizon_days": 90}, "model": {"encoder": {...}}}``.

    ``None`` values are skipped (an option the user did not give). Nested dicts reach nested sections.

    Raises
    ------
    ConfigError
        On a name that is not a setting of its section.
    """
    known = {f.name for f in dataclasses.fields(cfg)}
    updates = {}
    for name, value in changes.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r} of {type(cfg).__name__}; allowed: {sorted(known)}")
        if value is None:
            continue
        current = getattr(cfg, name)
        nested = isinstance(value, dict) and dataclasses.is_dataclass(current)
        updates[name] = apply_settings(current, value) if nested else value
    return dataclasses.replace(cfg, **updates) if updates else cfg
