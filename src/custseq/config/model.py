"""Settings of the models: the encoder, its pre-training, the training loop, fine-tuning, and the baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from custseq.errors import ConfigError


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
    # An epoch sees at most this many sequences, another share of them each epoch (None: all of them). Bounds
    # the network's cost on large data (1M rows: ~0.8M training sequences, 90 s per pre-training epoch on
    # 2 cores); the boosted head still learns from every row. Above CDNOW's (21k) and Online Retail's sizes.
    max_samples_per_epoch: int | None = 24_576

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.grad_accumulation, self.patience) < 1:
            raise ConfigError("epochs, batch_size, grad_accumulation and patience must be >= 1")
        if self.max_samples_per_epoch is not None and self.max_samples_per_epoch < self.batch_size:
            raise ConfigError(
                f"max_samples_per_epoch must be at least batch_size ({self.batch_size}), got "
                f"{self.max_samples_per_epoch}"
            )
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.clip_norm <= 0 or self.min_delta < 0:
            raise ConfigError("learning_rate and clip_norm must be > 0; weight_decay and min_delta >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.seed < 2**32:  # numpy's and torch's seeds
            raise ConfigError(f"seed must be a whole number from 0 to 4294967295, got {self.seed}")

    @property
    def max_batches_per_epoch(self) -> int | None:
        return None if self.max_samples_per_epoch is None else max(1, self.max_samples_per_epoch // self.batch_size)


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
    # Each epoch's validation loss and early-stopping score read at most this many of the validation customers
    # (a stable subset by id hash; None: all). An epoch's validation otherwise grows with the data while its
    # training does not (max_samples_per_epoch); calibration and the reported metrics use every one of them.
    max_epoch_validation_customers: int | None = 32_768

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
        if (cap := self.max_epoch_validation_customers) is not None and cap < 1:
            raise ConfigError(f"max_epoch_validation_customers must be at least 1 (or none), got {cap}")


CANDIDATES = ("network", "boosted", "boosted-features", "btyd")


@dataclass(frozen=True)
class PredictorConfig:
    """How ``predict`` turns the fine-tuned network into its final predictions (issue 15).

    Candidates, each scored on the validation customers of the latest training window (never a test window):
    ``network`` (the multi-task network), ``boosted`` (LightGBM on the rich features, the BTYD quantities
    and the network's customer embedding: CASPR's downstream design), ``boosted-features`` (the same without
    the embedding) and ``btyd`` (BG/NBD + Gamma-Gamma, no labels). The best one per task, or its best blend
    with one other candidate (``blend_step`` grid of weights), is used; churn is then calibrated on those
    customers, value scaled so that its total matches theirs, and P10/P50/P90 set by conformal quantiles.
    The boosted heads learn from the network's training customers, so the validation customers stay unseen.
    """

    candidates: tuple[str, ...] = CANDIDATES
    blend_step: float = 0.1  # 0 = no blends
    # LightGBM of the boosted candidates: rounds early-stopped on a held-out share of the training customers
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    early_stopping_fraction: float = 0.2  # of the training customers (second id hash)
    tweedie_variance_power: float = 1.5
    n_jobs: int = -1
    # The latest training windows up to this many customers in all (at least one window): older windows add
    # little and cost network scoring and LightGBM time (1M rows: 7 windows took 2 minutes, 3 took 105 s). When
    # the latest window alone has more, a stable sample of about this many of its customers (by id hash).
    # None: all windows, every customer.
    max_training_customers: int | None = 200_000
    # True: the chosen boosted heads are fitted again on the validation customers too (more data, but the
    # validation curves of the report would then be in-sample); off by default
    refit_on_validation: bool = False
    calibrate_total: bool = True  # value scaled so that predicted = actual total on the validation customers
    interval_bins: int = 5  # conformal P10/P50/P90 per churn-probability bin (Mondrian)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.candidates) - set(CANDIDATES))
        if unknown or not self.candidates:
            raise ConfigError(
                f"model.predictor.candidates: unknown or none {unknown}; choose from {', '.join(CANDIDATES)}"
            )
        if self.max_training_customers is not None and self.max_training_customers < 1:
            raise ConfigError(f"max_training_customers must be >= 1 (or unset), got {self.max_training_customers}")
        if not 0 <= self.blend_step <= 0.5:
            raise ConfigError(f"blend_step must be in [0, 0.5], got {self.blend_step}")
        if min(self.num_leaves, self.min_child_samples, self.max_rounds, self.early_stopping_rounds) < 1:
            raise ConfigError("num_leaves, min_child_samples, max_rounds and early_stopping_rounds must be >= 1")
        if not 0 < self.early_stopping_fraction < 1 or not 1 <= self.tweedie_variance_power < 2:
            raise ConfigError("early_stopping_fraction must be in (0, 1) and tweedie_variance_power in [1, 2)")
        if not (0 < self.learning_rate <= 1 and 0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1):
            raise ConfigError("learning_rate, subsample and colsample_bytree must be in (0, 1]")
        if self.interval_bins < 1:
            raise ConfigError(f"interval_bins must be >= 1, got {self.interval_bins}")


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
    predictor: PredictorConfig = field(default_factory=PredictorConfig)


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
