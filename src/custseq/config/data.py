"""Settings of the data stages: column mapping, row validation, time windows, features, sequences and the engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from custseq.errors import ConfigError


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


MAX_ABS_AMOUNT = 1e12  # the largest max_abs_amount: amounts are summed (and squared) as DECIMAL(38, 12)
MAX_SPAN_DAYS = 36_525  # 100 years: the longest horizon, stride or history a window setting may ask for
MAX_AS_OF = dt.date(2999, 12, 31)  # a later as-of is a typo, and dates near 9999 overflow


@dataclass(frozen=True)
class ValidationConfig:
    """Row-level rules: what sends a row to quarantine."""

    max_abs_amount: float = 1e9  # |amount| above this is treated as a data error
    # "auto": quarantine exact duplicate rows unless timestamps are dates only and there is no order id,
    # where two identical rows are indistinguishable from two real purchases on one day.
    duplicates: Literal["auto", "quarantine", "keep"] = "auto"
    future_rows: Literal["keep", "quarantine"] = "keep"  # "quarantine": rows after as_of must not exist
    currencies: tuple[str, ...] | None = None  # accepted currency codes; None = ISO 4217
    # strptime format of text timestamps (e.g. "%d/%m/%Y"), or epoch_s / epoch_ms / epoch_us / epoch_ns for Unix
    # times; None = detect from the rows up to the as-of date (an ambiguous format is an error, never a guess)
    ts_format: str | None = None
    # "error": amounts in several currencies (the currency column, rows up to the as-of date) are refused, since
    # custseq converts nothing; "allow": they are summed as they are
    mixed_currencies: Literal["error", "allow"] = "error"
    # A plausible date range: a row outside it is a typo, quarantined (rule ts_out_of_range) so that it cannot
    # stretch the history over decades of empty windows.
    min_date: dt.date = dt.date(1970, 1, 1)  # rows before this day are quarantined
    max_date: dt.date | None = None  # rows after this day are; None = the later of today and as-of + tolerance
    max_days_after_as_of: int = 2  # the tolerance (time zones, late exports) when max_date is None
    # A row more than this many years before the data's 1st percentile date is quarantined (rule
    # ts_far_before_data); None = off
    far_past_years: float | None = 5.0

    def __post_init__(self) -> None:
        if self.max_date is not None and not self.min_date <= self.max_date <= MAX_AS_OF:
            raise ConfigError(f"max_date ({self.max_date}) must be from min_date ({self.min_date}) to {MAX_AS_OF}")
        if not 0 <= self.max_days_after_as_of <= MAX_SPAN_DAYS:
            raise ConfigError(f"max_days_after_as_of must be 0 to {MAX_SPAN_DAYS}, got {self.max_days_after_as_of}")
        if self.far_past_years is not None and not 0 < self.far_past_years <= 100:
            raise ConfigError(f"far_past_years must be above 0 and at most 100 (or unset), got {self.far_past_years}")
        if not 0 < self.max_abs_amount <= MAX_ABS_AMOUNT:  # sums are exact decimals of 26 integer digits
            raise ConfigError(
                f"max_abs_amount must be above 0 and at most {MAX_ABS_AMOUNT:g}, got {self.max_abs_amount}; "
                "amounts beyond that are data errors or another unit (divide them, e.g. into thousands)"
            )
        if self.duplicates not in ("auto", "quarantine", "keep"):
            raise ConfigError(f"duplicates must be auto, quarantine or keep, got {self.duplicates!r}")
        if self.future_rows not in ("keep", "quarantine"):
            raise ConfigError(f"future_rows must be keep or quarantine, got {self.future_rows!r}")
        if self.mixed_currencies not in ("error", "allow"):
            raise ConfigError(f"mixed_currencies must be error or allow, got {self.mixed_currencies!r}")


@dataclass(frozen=True)
class WindowConfig:
    """The time protocol (DESIGN §3): scoring date, horizon and training cutoffs."""

    as_of: dt.date | None = None  # inclusive; None = the last day in the data
    horizon_days: int = 90
    stride_days: int | None = None  # between training cutoffs; None = horizon
    # The latest this many; None = as many as history allows. A cap, so that a long history (or a date typo that
    # passed validation) cannot make thousands of windows.
    max_train_windows: int | None = 100
    min_history_days: int = 30  # a training cutoff needs this much history before it
    # False: a plan without any training window is allowed (evaluate's label-free methods, e.g. BTYD, still run)
    require_training: bool = True

    def __post_init__(self) -> None:
        if self.as_of is not None and self.as_of > MAX_AS_OF:
            raise ConfigError(f"as_of {self.as_of} is not a plausible date; it must be on or before {MAX_AS_OF}")
        if not 1 <= self.horizon_days <= MAX_SPAN_DAYS:
            raise ConfigError(f"horizon_days must be 1 to {MAX_SPAN_DAYS} (100 years), got {self.horizon_days}")
        if self.stride_days is not None and not 1 <= self.stride_days <= MAX_SPAN_DAYS:
            raise ConfigError(f"stride_days must be 1 to {MAX_SPAN_DAYS} (100 years), got {self.stride_days}")
        if self.max_train_windows is not None and self.max_train_windows < 1:
            raise ConfigError(f"max_train_windows must be at least 1, got {self.max_train_windows}")
        if not 0 <= self.min_history_days <= MAX_SPAN_DAYS:
            raise ConfigError(f"min_history_days must be 0 to {MAX_SPAN_DAYS} (100 years), got {self.min_history_days}")


# Feature families on top of the core columns (BTYD summary, tenure, totals, the horizon's last and previous
# period, orders and channels), which are always present because other stages read them. The columns of
# each group are listed in custseq.features.rfm.
FEATURE_GROUPS = (
    "recency",  # purchase days, spend and transactions in the last N days (recent_windows_days)
    "trends",  # last N days against the N days before, for the horizon and every recent window
    "timing",  # inter-purchase gaps: mean, std, median, max, last, recent mean, regularity, overdue ratio
    "calendar",  # weekday and (when timestamps carry a time of day) hour-of-day concentration
    "spend",  # spread of net spend over purchase days, recent mean, largest day
    "basket",  # amount, lines and quantity per order (per purchase day without order_id)
    "products",  # distinct products and categories, repeat rate, novelty, entropy, favourite category share
    "refunds",  # refunded amount and share of refund rows
    "profile",  # customer attributes (profile_*) and days since signup
    "events",  # behaviour events: counts, distinct kinds, days since the last one
    "text",  # event texts (events.text): count, sentiment, share of negative texts, recent mean text vector
)


@dataclass(frozen=True)
class FeatureConfig:
    """Tabular (RFM and behaviour) features."""

    recent_windows_days: tuple[int, ...] = (7, 30, 90, 180, 365)  # counts and spend in the last N days
    groups: tuple[str, ...] = FEATURE_GROUPS  # feature families computed; the core columns are always there
    # BG/NBD fitted on each window's own RFM summary adds btyd_p_alive and btyd_expected_purchases (per
    # horizon) as features; a failed fit leaves both columns null (the schema never changes)
    btyd: bool = True
    # the events group counts each of the N most frequent event types of the training rows on its own
    # (event_<type>_n, _last_30d, _last_h, days_since_last_event_<type>); rarer types only enter the totals
    max_event_types: int = 8

    def __post_init__(self) -> None:
        if self.max_event_types < 0:
            raise ConfigError(f"max_event_types must be 0 or more, got {self.max_event_types}")
        if not self.recent_windows_days or min(self.recent_windows_days) < 1:
            raise ConfigError(f"recent_windows_days must be positive days, got {self.recent_windows_days}")
        if unknown := sorted(set(self.groups) - set(FEATURE_GROUPS)):
            hint = " (BTYD features are switched by features.btyd)" if "btyd" in unknown else ""
            raise ConfigError(f"unknown feature group(s) {unknown}; known: {list(FEATURE_GROUPS)}{hint}")


@dataclass(frozen=True)
class TextConfig:
    """Free text on events (``events.text``: tickets, reviews), read offline: a sentiment score and a vector per text.

    The vector is a TF-IDF of words (and word pairs) projected by a truncated SVD, both fitted on the texts
    before the latest training cutoff (where the vocabularies are fitted); the sentiment is VADER's compound score
    (Hutto & Gilbert 2014), from the lexicon the vaderSentiment package ships. Both enter the event tokens as
    numeric attributes (``event_text_sentiment``, ``event_text_svd_1``…) and, aggregated per customer, the
    ``text`` feature group. Nothing is downloaded.
    """

    enabled: bool = True  # false: the text column is kept but not used
    svd_dims: int = 16  # dimensions of the text vector (truncated SVD of the TF-IDF)
    max_terms: int = 2000  # TF-IDF vocabulary: the most frequent words and word pairs of the training texts
    min_texts: int = 2  # a word (or pair) must appear in at least this many training texts
    ngram_max: int = 2  # 1: single words; 2: words and pairs of adjacent words ("not arrived")
    max_fit_texts: int = 200_000  # the latest this many training texts fit the TF-IDF and the SVD
    negative_below: float = -0.05  # a text whose sentiment is at or below this is negative (VADER's own cut)
    feature_days: tuple[int, ...] = (30, 90)  # text count, mean sentiment and negative share over the last N days
    recent_texts: int = 5  # the feature text vector is the mean over the customer's last N texts
    seed: int = 0  # of the randomised SVD

    def __post_init__(self) -> None:
        if not 1 <= self.svd_dims <= 256:
            raise ConfigError(f"text svd_dims must be 1 to 256, got {self.svd_dims}")
        if self.max_terms < 2 or self.min_texts < 1 or self.max_fit_texts < 2 or self.recent_texts < 1:
            raise ConfigError(
                "text max_terms and max_fit_texts must be at least 2, min_texts and recent_texts at least 1; got "
                f"{self.max_terms}, {self.max_fit_texts}, {self.min_texts} and {self.recent_texts}"
            )
        if self.ngram_max not in (1, 2, 3):
            raise ConfigError(f"text ngram_max must be 1, 2 or 3, got {self.ngram_max}")
        if not -1 <= self.negative_below <= 1:
            raise ConfigError(f"text negative_below is a sentiment from -1 to 1, got {self.negative_below}")
        if not self.feature_days or not all(1 <= d <= MAX_SPAN_DAYS for d in self.feature_days):
            raise ConfigError(f"text feature_days must be days from 1 to {MAX_SPAN_DAYS}, got {self.feature_days}")


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


PROSPECT_MODES = ("score", "exclude")


@dataclass(frozen=True)
class ProspectConfig:
    """People with behaviour events but no purchase before the cutoff (prospects).

    ``score``: a model of their own learns, on the training windows' prospects, who makes a first purchase in
    the horizon (their "churn" is not converting) and what they spend; they are scored into prospects.csv, not
    predictions.csv. ``exclude``: only counted. Either way metrics.json and the report say how many there are.
    """

    mode: str = "score"
    # fewer prospects (or first purchases) than these in the training windows: counted, not scored, and why
    min_training_prospects: int = 200
    min_first_purchases: int = 20

    def __post_init__(self) -> None:
        if self.mode not in PROSPECT_MODES:
            raise ConfigError(f"prospects.mode must be one of {list(PROSPECT_MODES)}, got {self.mode!r}")
        if self.min_training_prospects < 1 or self.min_first_purchases < 1:
            raise ConfigError("prospects.min_training_prospects and min_first_purchases must be at least 1")


@dataclass(frozen=True)
class EngineConfig:
    """The engine that prepares the data: the embedded DuckDB (default), or Apache Spark (the ``[spark]`` extra)."""

    # "spark": validation, windows, labels, features and sequences run on a SparkSession (custseq.spark); the
    # prepared folder is the same. DuckDB's settings below then apply to each Spark task's share of customers.
    name: Literal["duckdb", "spark"] = "duckdb"
    threads: int | None = None  # None = DuckDB's default (all cores); one per Spark task on the Spark engine
    # e.g. "4GB"; None = half of this machine's memory (or of its container's limit), the rest left to Python
    memory_limit: str | None = None
    # where DuckDB spills when memory runs short; None = a new folder in the system temp dir (TMPDIR)
    temp_directory: str | None = None
    # clean rows the DuckDB engine prepares at a time, a range of customer ids after another, when the data hold
    # more (tokens, sequences, daily tables, features, labels); None = as many as half of memory_limit keeps
    # (about 750 bytes each: 8.4M rows with 11.75 GiB), so that preparation does not spill to disk
    range_rows: int | None = None
    # Spark master URL (local[4], spark://host:7077, yarn); None = the active SparkSession, else local[*]
    spark_master: str | None = None
    # clean rows per Spark task of the per-customer stages (features, labels and sequences of every window)
    spark_partition_rows: int = 500_000
    # a folder the driver and every executor can read and write (/dbfs/tmp/custseq, an NFS mount): the tasks
    # write their outputs there and the driver gathers them into the prepared folder. None = beside the output
    # on a local master; on a cluster each task's outputs then travel to the driver, and must stay under
    # spark.driver.maxResultSize (1g by default; 2M rows per task did not)
    spark_staging_dir: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ("duckdb", "spark"):
            raise ConfigError(f"engine.name must be duckdb or spark, got {self.name!r}")
        if self.range_rows is not None and self.range_rows < 1:
            raise ConfigError(f"engine.range_rows must be at least 1 (or unset), got {self.range_rows}")
        if self.spark_partition_rows < 1:
            raise ConfigError(f"engine.spark_partition_rows must be at least 1, got {self.spark_partition_rows}")
        if self.spark_staging_dir is not None and "://" in self.spark_staging_dir:
            raise ConfigError(
                f"engine.spark_staging_dir must be a folder path the driver and executors have mounted (e.g. "
                f"/dbfs/tmp/custseq), not a URL: {self.spark_staging_dir!r}"
            )
