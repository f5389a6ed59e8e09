"""Batch scoring on Spark: a model saved by ``predict`` scores a Spark DataFrame of transactions on the executors,
with the columns and the numbers ``custseq score`` writes to predictions.csv.

Two passes, because three columns rank a customer among all the customers scored together:

1. Customers are hashed into batches of about ``customers_per_batch`` (``groupBy(batch).applyInPandas``): all
   of a customer's rows are in one pandas batch, which is scored exactly as ``custseq score`` scores a table
   (validation, features with the model's saved BG/NBD fit, sequences with its vocabulary, the network and its
   predictor, P(alive), lapse, profit, next items). These columns are the customer's own: a customer gets them
   whichever batch it is in. The model is loaded once per Python worker (:func:`loaded_scorer`).
2. ``segment`` (its top value tier), ``value_score`` (rank-normalised signals) and ``next_actions`` (its rules
   read both) depend on the whole population: Spark counts, for every value of the ranked signals, how many
   customers hold a smaller one (:func:`population_ranks`, a range-partitioned sort, no single-partition
   window), and a second pass (``mapInPandas``) finishes the three columns with the scoring modules' own rules
   on those population-wide counts.

Nothing here imports pyspark at import time (the ``[spark]`` extra).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from custseq.config import RunConfig, parse_date
from custseq.errors import ConfigError
from custseq.io.atomic import work_folder
from custseq.io.prepared import WindowFolder
from custseq.io.tables import Tables
from custseq.models.finetune import PREDICTION_COLUMNS as SCORE_COLUMNS
from custseq.models.finetune import ChurnValueModel, load_churn_value
from custseq.pipelines.outputs import ItemProposer, score_customers, scores_and_items
from custseq.pipelines.predict import NEXT_EVENT_DIR, saved_data_config
from custseq.pipelines.prepare import prepare_scoring_sequences
from custseq.pipelines.score import load_item_proposer, refuse_partial_run
from custseq.scoring.actions import load_catalogue, plan_actions
from custseq.scoring.products import load_products
from custseq.scoring.scores import SIGNALS, hyperscore, value_signals, weighted_ranks
from custseq.scoring.segments import FEATURE_COLUMNS, assign_segments, features_by_customer, within_top_share

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# predictions.csv's columns, in its order
PREDICTIONS = (
    "customer_id", *SCORE_COLUMNS, "p_alive", "lapsed_regular", "segment", "value_score", "contact_profit",
    "next_items", "retention_flag", "next_actions",
)  # fmt: skip
_BOOLEAN = ("lapsed_regular", "retention_flag")
_TEXT = ("segment", "next_items", "next_actions")
POPULATION_COLUMNS = ("segment", "value_score", "next_actions")  # finished in the second pass
_BATCH = "_custseq_batch"


@dataclass(frozen=True)
class LoadedScorer:
    """A saved model with its data settings and next-item proposer, as ``custseq score --model`` loads it."""

    model: ChurnValueModel
    data_config: RunConfig
    proposer: ItemProposer | None


@functools.lru_cache(maxsize=4)
def loaded_scorer(model_dir: str) -> LoadedScorer:
    """The model in ``model_dir``, loaded once per process: Spark's Python workers are reused across tasks, so
    an executor loads each model once, not once per batch.

    Raises
    ------
    ArtifactError
        If the folder is missing, corrupted or not a churn-value model, or is inside a predict run stopped before
        its end.
    """
    refuse_partial_run(Path(model_dir))
    model, saved, _ = load_churn_value(model_dir)
    return LoadedScorer(model, saved_data_config(saved["data"]), load_item_proposer(Path(model_dir) / NEXT_EVENT_DIR))


def score_spark(
    transactions: DataFrame,
    model_dir: Path | str,
    *,
    as_of: str,
    customers_per_batch: int | None = None,
) -> DataFrame:
    """Score every customer of a Spark DataFrame of transactions with a model saved by ``predict``.

    Parameters
    ----------
    transactions : pyspark.sql.DataFrame
        The transactions, with the columns the model was trained on under their canonical names
        (``customer_id``, ``ts``, ``amount``…; or the names the model's saved column mapping gives). Timestamps
        are read as UTC wall-clock time: a ``TIMESTAMP`` column needs the session time zone UTC.
    model_dir : path
        The ``model`` folder of a ``predict`` output, readable at the same path on every executor.
    as_of : str
        The scoring date (``YYYY-MM-DD``); rows after it are ignored. Needed here because each batch's last
        day is not the data's.
    customers_per_batch : int, optional
        About how many customers one pandas batch holds (it is in one executor's memory at once); by default the
        model's ``sequence.shard_customers``.

    Returns
    -------
    pyspark.sql.DataFrame
        predictions.csv's columns (:data:`PREDICTIONS`), one row per customer with history at ``as_of``;
        ``next_items`` and ``next_actions`` as JSON text, numbers unrounded, in no particular order.

    Raises
    ------
    ConfigError
        If the customer column is missing, ``customers_per_batch`` is below 1, or a ``TIMESTAMP`` column would be
        shifted by a session time zone other than UTC.
    ArtifactError
        If the model cannot be loaded.
    """
    from pyspark.sql import functions as F

    model_path = str(Path(model_dir).absolute())
    scorer = loaded_scorer(model_path)
    as_of_day = parse_date(as_of, "as-of").isoformat()  # refuses a bad date before any Spark job
    customer, ts = (scorer.data_config.columns.transactions.get(c, c) for c in ("customer_id", "ts"))
    _check_columns(transactions, customer, ts)
    per_batch = customers_per_batch or scorer.data_config.sequence.shard_customers
    if per_batch < 1:
        raise ConfigError(f"customers_per_batch must be at least 1, got {per_batch}")

    rows = _customers_with_history(transactions, customer, ts, as_of_day)
    n_customers = rows.agg(F.approx_count_distinct(customer)).collect()[0][0]
    batches = max(1, math.ceil(n_customers / per_batch))
    batched = rows.withColumn(_BATCH, F.pmod(F.xxhash64(F.col(customer).cast("string")), F.lit(batches)))
    id_type = "long" if dict(transactions.dtypes)[customer] in ("int", "bigint", "smallint", "tinyint") else "string"

    def first_pass(rows: pd.DataFrame) -> pd.DataFrame:
        return score_batch(rows, model_dir=model_path, as_of=as_of_day, id_type=id_type)

    # computed once: the ranks below and the second pass read it
    own = batched.groupBy(_BATCH).applyInPandas(first_pass, schema=_first_pass_schema(id_type)).localCheckpoint()
    population = own.count()
    ranked = own
    for signal in SIGNALS:
        ranked = ranked.join(population_ranks(own, signal), on=signal, how="left")

    def second_pass(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return finish_population_columns(batches, model_dir=model_path, population=population)

    return ranked.mapInPandas(second_pass, schema=_schema(id_type)).select(*PREDICTIONS)


def _check_columns(transactions: DataFrame, customer: str, ts: str) -> None:
    from pyspark.sql.types import TimestampType

    if customer not in transactions.columns:
        raise ConfigError(
            f"the transactions have no customer column {customer!r}; found {transactions.columns}. "
            "Rename the columns to custseq's canonical names (customer_id, ts, amount, ...)."
        )
    fields = {f.name: f.dataType for f in transactions.schema.fields}
    zone = transactions.sparkSession.conf.get("spark.sql.session.timeZone")
    if isinstance(fields.get(ts), TimestampType) and zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise ConfigError(
            f"the transactions' {ts} is a TIMESTAMP and the session time zone is {zone}: pandas would get local "
            "times. Set spark.sql.session.timeZone to UTC, or pass the column as TIMESTAMP_NTZ."
        )


def _customers_with_history(transactions: DataFrame, customer: str, ts: str, as_of_day: str) -> DataFrame:
    """Only the customers with a row on or before ``as_of`` (the others have no score), when ``ts`` is typed;
    so that no batch is left with nothing but later customers (an as-of before its first row is refused)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    if ts not in transactions.columns:  # an alias custseq detects (InvoiceDate...): each batch finds it
        return transactions
    if not isinstance(transactions.schema[ts].dataType, DateType | TimestampType | TimestampNTZType):
        return transactions
    cutoff = F.date_add(F.to_date(F.lit(as_of_day)), 1)
    active = transactions.where(F.col(ts) < cutoff).select(customer).distinct()
    return transactions.join(active, on=customer, how="left_semi")


def score_batch(rows: pd.DataFrame, *, model_dir: str, as_of: str, id_type: str) -> pd.DataFrame:
    """First pass: one batch of customers' rows scored as ``custseq score`` scores a table.

    Returns every predictions column (the population ones provisional, ranked within the batch) with what the
    second pass needs: the segment features and the value score's signals.
    """
    scorer = loaded_scorer(model_dir)
    model = scorer.model
    cfg = scorer.data_config
    window = dataclasses.replace(cfg.window, horizon_days=model.horizon_days, as_of=parse_date(as_of, "as-of"))
    cfg = dataclasses.replace(cfg, window=window)
    rows = rows.drop(columns=[_BATCH])
    with work_folder("score") as tmp:
        work = WindowFolder(tmp)
        population = model.predictor.btyd_fit if model.predictor is not None else None
        scoring = prepare_scoring_sequences(
            Tables.of(rows), cfg, tmp, vocab=model.vocab, with_features=True,
            btyd_fit=population.record() if population is not None else None,
        )  # fmt: skip
        scores, proposed = scores_and_items(model, work, scorer.proposer, cfg)
        integer_ids = scoring.report.accounts()["transactions"].customer_id_type == "integer"
        scored = score_customers(scores, work, model, cfg, scorer.proposer, integer_ids=integer_ids, proposed=proposed)
        features = pq.read_table(work.features).to_pandas()
    predictions = scored.predictions
    by_text_id = predictions.assign(customer_id=predictions["customer_id"].astype(str))
    extra = features_by_customer(by_text_id, features, FEATURE_COLUMNS)
    signals = value_signals(by_text_id, features)
    out = pd.concat([predictions.reset_index(drop=True), extra.reset_index(drop=True),
                     signals.reset_index(drop=True)], axis=1)  # fmt: skip
    return _typed(out, id_type)


def population_ranks(scored: DataFrame, column: str) -> DataFrame:
    """For every distinct value of ``column``: ``<column>_below``, how many rows hold a smaller value, and
    ``<column>_ties``, how many hold it.

    The distinct values are range-partitioned (Spark samples the bounds), each partition's values summed in
    order, and each partition offset by the rows of the partitions before it: exact, and no step needs the whole
    population in one partition.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ties, below = f"{column}_ties", f"{column}_below"
    counts = scored.groupBy(column).agg(F.count(F.lit(1)).alias(ties))
    ranged = counts.repartitionByRange(column).withColumn("_part", F.spark_partition_id()).localCheckpoint()
    sizes = sorted(ranged.groupBy("_part").agg(F.sum(ties).alias("n")).collect())
    offsets, total = [], 0
    for part, size in sizes:
        offsets.append((part, total))
        total += size
    offset_frame = scored.sparkSession.createDataFrame(offsets, "_part INT, _offset LONG")
    running = Window.partitionBy("_part").orderBy(column).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    at_or_below = F.sum(ties).over(running) + F.col("_offset")
    return ranged.join(F.broadcast(offset_frame), on="_part").select(
        column, ties, (at_or_below - F.col(ties)).alias(below)
    )


def finish_population_columns(
    batches: Iterator[pd.DataFrame], *, model_dir: str, population: int
) -> Iterator[pd.DataFrame]:
    """Second pass: ``segment``, ``value_score`` and ``next_actions`` from the population-wide ranks, with the
    rules of :mod:`custseq.scoring.segments`, :mod:`custseq.scoring.scores` and :mod:`custseq.scoring.actions`."""
    scorer = loaded_scorer(model_dir)
    cfg = scorer.data_config
    catalogue = load_catalogue(cfg.actions.catalogue)
    products = load_products(cfg.actions.products) if cfg.actions.products else None
    for frame in batches:
        if frame.empty:
            continue
        predictions = frame[list(PREDICTIONS)].copy()
        text_ids = predictions.assign(customer_id=predictions["customer_id"].astype(str))
        features = frame[list(FEATURE_COLUMNS)].assign(customer_id=text_ids["customer_id"])
        # pandas' average rank of a value is the rows below it plus the mean position among its ties
        ranks = [(frame[f"{s}_below"] + (frame[f"{s}_ties"] + 1) / 2) / population for s in SIGNALS]
        at_least_as_high = population - frame[f"{SIGNALS[0]}_below"].to_numpy()  # SIGNALS[0]: clv_expected
        top_tier = within_top_share(at_least_as_high, population, cfg.segments.top_value_share)
        predictions["segment"] = assign_segments(
            text_ids, features, cfg.segments, horizon_days=scorer.model.horizon_days, top_tier=top_tier
        ).to_numpy()
        raw = weighted_ranks(ranks, cfg.value_score)
        predictions["value_score"] = hyperscore(raw, cfg.value_score).astype(np.float64)
        yield plan_actions(predictions, cfg.actions, catalogue, products)[list(PREDICTIONS)]


def _typed(frame: pd.DataFrame, id_type: str) -> pd.DataFrame:
    """The columns in the first pass's schema order, with the types Arrow maps onto it."""
    columns = [*PREDICTIONS, *FEATURE_COLUMNS, *SIGNALS]
    frame = frame[columns].copy()
    frame["customer_id"] = frame["customer_id"].astype("int64" if id_type == "long" else str)
    for name in _TEXT:
        frame[name] = frame[name].astype(str)
    for name in _BOOLEAN:
        frame[name] = frame[name].astype(bool)
    return frame


def _schema(id_type: str) -> str:
    """predictions.csv's columns as a Spark DDL schema."""
    types = dict.fromkeys(PREDICTIONS, "double") | dict.fromkeys(_TEXT, "string")
    types |= dict.fromkeys(_BOOLEAN, "boolean")
    types["customer_id"] = id_type
    return ", ".join(f"`{name}` {types[name]}" for name in PREDICTIONS)


def _first_pass_schema(id_type: str) -> str:
    extra = ", ".join(f"`{name}` double" for name in (*FEATURE_COLUMNS, *SIGNALS))
    return f"{_schema(id_type)}, {extra}"
