"""``prepare`` on Apache Spark: the same prepared folder as the DuckDB engine, from tables Spark reads.

Stages, and who runs them:

* reading, staging, the validation rules, quarantine and row accounting: Spark SQL
  (:mod:`custseq.spark.validate`; the rules' predicates are the DuckDB engine's, read as Spark SQL);
* the window plan, the data's currency and the categorical vocabularies: small Spark aggregates on the driver;
* per customer range, in Spark tasks: tokens, sequences, daily tables, features (every group), labels, with the
  DuckDB engine's own functions (:mod:`custseq.spark.partitions`);
* BG/NBD features, as the DuckDB engine fits them, on the driver over the written features.

The tasks write their outputs to a staging folder (:func:`staging_folder`: beside ``out`` on a local master, or
``[engine] spark_staging_dir`` on a shared file system) and send back only the files' paths; the driver gathers
them, one file at a time, into the DuckDB engine's layout. Without a staging folder (a cluster, no shared folder
given) the outputs travel inline to the driver, one task's at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from custseq.config import RunConfig
from custseq.errors import ConfigError
from custseq.io.prepared import VOCAB_FILE
from custseq.io.run_files import QUARANTINE_DIR
from custseq.io.tables import Tables
from custseq.pipelines.prepare import PrepareResult, finish_prepare, timed_stage, window_roles
from custseq.pipelines.ranges import (
    NUMERIC_SUMS,
    PartitionWork,
    PreparedWindowSpec,
    finish_window,
    write_outputs,
)
from custseq.progress import Note
from custseq.schema import quote_ident
from custseq.sequences.tokens import TokenLayout, layout_for
from custseq.sequences.vocab import SequenceVocab, combine_numeric_sums
from custseq.spark.partitions import (
    KEY,
    OUTPUT_SCHEMA,
    TABLE_TAG,
    partition_count,
    prefixed,
    read_output,
    run_partition,
)
from custseq.spark.session import driver_stops_as_error, session_for
from custseq.spark.sql import literal
from custseq.spark.validate import validate_on_spark
from custseq.text.events import uses_text
from custseq.validate.currencies import currency_of_data
from custseq.validate.tables import ValidationReport
from custseq.windows import Window, WindowPlan, cutoff_of, plan_windows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

Progress = Callable[[str], None]
STAGING_DIR = ".spark-parts"  # in the output folder, while the tasks' outputs are gathered (local masters)


def prepare_on_spark(
    tables: Tables, config: RunConfig, out: Path | str, *, progress: Progress | None = None
) -> PrepareResult:
    """:func:`custseq.pipelines.prepare.prepare` on Spark (``config.engine.name == "spark"``).

    Raises
    ------
    CustseqError
        On any problem the user can fix, as the DuckDB engine; :class:`~custseq.errors.EngineError` when Spark's
        driver stopped (out of memory) on the way.
    """
    spark = session_for(config.engine.spark_master)
    with driver_stops_as_error("preparing the data"):
        return _prepare(spark, tables, config, Path(out), progress or (lambda _msg: None))


def _prepare(spark: SparkSession, tables: Tables, config: RunConfig, out: Path, say: Progress) -> PrepareResult:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed_stage(timings, "validate_s", say, "validating tables (Spark)"):
        future = cutoff_of(config.window.as_of) if config.window.as_of else None
        report = validate_on_spark(spark, tables, config, quarantine_dir=out / QUARANTINE_DIR, future_cutoff=future)
        tx, ev = report.tables["transactions"], report.tables.get("events")
    if uses_text(ev, config.text):  # the text model is fitted by the DuckDB engine only, for now
        raise ConfigError(
            "the events' text column is not read by the Spark engine yet: prepare with the default DuckDB engine, "
            "or leave texts out with `[text] enabled = false` (or without the text column)"
        )
    start, end, first_timed = spark.sql(
        f"SELECT min(ts), max(ts), min(CAST(ts AS DATE)) FILTER (WHERE NOT is_refund "
        f"AND ts <> CAST(CAST(ts AS DATE) AS TIMESTAMP_NTZ)) FROM {tx.sql_name}"
    ).collect()[0]
    plan = plan_windows(start, end, config.window)
    config, currency_note = _with_data_currency(spark, config, report, plan.scoring.cutoff)
    notes = plan.notes + ((currency_note,) if currency_note else ())
    for note in notes:
        say(Note(note))
    roles = window_roles(plan)
    with timed_stage(timings, "vocab_s", say, "fitting vocabularies on training rows (Spark)"):
        layout = layout_for(tx, ev, config.sequence.token)
        values = _fit_categories(spark, layout, report, plan.vocab_cutoff, config)
        carrier = _carrier(spark, report, config)
        work = PartitionWork(
            tables=dict(report.tables), columns=_columns(spark, report), config=config, layout=layout,
            vocab=SequenceVocab(layout, values, {}, plan.vocab_cutoff.isoformat()),
            token_cutoffs=(plan.vocab_cutoff, *(w.cutoff for _, w in roles)), stats_before=plan.vocab_cutoff,
        )  # fmt: skip
        sums = [table for kind, _, table in _run(carrier, work, NUMERIC_SUMS) if kind == NUMERIC_SUMS]
        vocab = dataclasses.replace(work.vocab, stats=combine_numeric_sums(layout, sums))
        vocab.save(out / VOCAB_FILE)
    with timed_stage(timings, "windows_s", say, f"{len(roles)} windows: features, labels, sequences (Spark)"):
        specs = _window_specs(spark, tx.sql_name, plan, roles)
        work = dataclasses.replace(
            work, vocab=vocab, windows=specs, scoring_cutoff=plan.scoring.cutoff,
            first_timed_day=first_timed if first_timed and first_timed < plan.scoring.cutoff.date() else None,
        )  # fmt: skip
        with staging_folder(spark, config, out) as staging:
            work = dataclasses.replace(work, staging=None if staging is None else str(staging))
            write_outputs(_run(carrier, work, "windows"), out, specs)
        windows = [finish_window(out, spec, config) for spec in specs]
    carrier.unpersist()
    return finish_prepare(out, plan, config, report, windows, notes, layout, vocab, timings)


def _with_data_currency(
    spark: SparkSession, config: RunConfig, report: ValidationReport, cutoff: dt.datetime
) -> tuple[RunConfig, str | None]:
    """:func:`custseq.pipelines.prepare._with_data_currency`, with the currency counts from Spark."""
    if config.profit.currency is not None:
        return config, None
    tx, mapping = report.tables["transactions"], report.mappings["transactions"]
    sources = mapping.amount_product or tuple(s for c, s in mapping.canonical.items() if c == "amount")
    with duckdb.connect() as con:
        if tx.has("currency"):
            counts = spark.sql(
                f"SELECT currency, count(*) AS n FROM {tx.sql_name} WHERE ts < {literal(cutoff)} GROUP BY 1"
            ).toArrow()
        else:
            counts = pa.table({"currency": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
        con.register("__counts", counts)
        # One row per counted row, dated before the cutoff: the DuckDB engine's query reads the same shares.
        con.execute("CREATE VIEW stand_in AS SELECT currency, TIMESTAMP '1970-01-01' AS ts FROM __counts, range(n)")
        found = currency_of_data(con, "stand_in", tx.has("currency"), tuple(sources), cutoff)
    if found.code is None:
        return config, found.note
    return dataclasses.replace(config, profit=dataclasses.replace(config.profit, currency=found.code)), found.note


def _fit_categories(
    spark: SparkSession, layout: TokenLayout, report: ValidationReport, before: dt.datetime, config: RunConfig
) -> dict[str, tuple[str, ...]]:
    """:func:`custseq.sequences.vocab.fit_categories` in Spark SQL (the same query)."""
    cfg = config.sequence
    values: dict[str, list[str]] = {f.name: [] for f in layout.categorical()}
    if not values:
        return {}
    parts = []
    for f in layout.categorical():
        table, col = report.tables[f.table].sql_name, quote_ident(f.column)
        parts.append(
            f"SELECT {literal(f.name)} AS field, v, n, row_number() OVER (ORDER BY n DESC, v) AS k FROM ("
            f"SELECT CAST({col} AS STRING) AS v, count(*) AS n FROM {table} "
            f"WHERE ts < {literal(before)} AND {col} IS NOT NULL GROUP BY 1) WHERE n >= {int(cfg.min_count)}"
        )
    rows = spark.sql(
        f"SELECT field, v FROM ({' UNION ALL '.join(parts)}) WHERE k <= {int(cfg.max_vocab)} ORDER BY field, k"
    ).collect()
    for field, value in rows:
        values[field].append(str(value))
    return {name: tuple(v) for name, v in values.items()}


def _columns(spark: SparkSession, report: ValidationReport) -> dict[str, tuple[str, ...]]:
    return {name: tuple(spark.table(t.sql_name).columns) for name, t in report.tables.items()}


def _carrier(spark: SparkSession, report: ValidationReport, config: RunConfig) -> DataFrame:
    """Every clean table in one frame (columns prefixed by table), range-partitioned by customer and cached."""
    from pyspark.sql import functions as F

    frames = []
    for name, clean in report.tables.items():
        frame = spark.table(clean.sql_name)
        frames.append(
            frame.select(
                F.col("customer_id").alias(KEY), F.lit(name).alias(TABLE_TAG),
                *(frame[c].alias(prefixed(name, c)) for c in frame.columns),
            )
        )  # fmt: skip
    carrier = frames[0]
    for other in frames[1:]:
        carrier = carrier.unionByName(other, allowMissingColumns=True)
    rows = sum(t.rows_used for t in report.tables.values())
    n = partition_count(rows, config.engine.spark_partition_rows)
    return carrier.repartitionByRange(n, KEY).cache()


@contextlib.contextmanager
def staging_folder(spark: SparkSession, config: RunConfig, out: Path) -> Iterator[Path | None]:
    """Where the tasks write their window outputs: a new folder in ``[engine] spark_staging_dir`` when it is set, else
    ``out``/:data:`STAGING_DIR` on a local master (one machine: the executors see the driver's files), else None
    (a cluster without a shared folder: outputs are sent to the driver). Removed afterwards, whatever happens."""
    if config.engine.spark_staging_dir:
        folder: Path | None = Path(config.engine.spark_staging_dir) / f"custseq-{uuid.uuid4().hex}"
    elif (spark.sparkContext.master or "").startswith("local"):
        folder = out / STAGING_DIR
    else:
        folder = None
    if folder is None:
        yield None
        return
    shutil.rmtree(folder, ignore_errors=True)  # what a stopped run left
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(carrier: DataFrame, work: PartitionWork, job: str) -> Iterator[tuple[str, str, pa.Table]]:
    """(kind, window key, table) of every output of every partition, partitions in customer order."""
    from pyspark.sql.types import StructType

    schema = StructType.fromJson(
        {"type": "struct", "fields": [
            {"name": f.name, "type": "binary" if f.type == pa.binary() else "string", "nullable": True,
             "metadata": {}} for f in OUTPUT_SCHEMA
        ]}
    )  # fmt: skip
    frame = carrier.mapInArrow(lambda batches: run_partition(batches, work, job), schema)
    if job == NUMERIC_SUMS or work.staging:  # small rows: one job, every task at once
        rows: Iterable[Row] = frame.collect()
    else:  # each task's outputs, inline: two tasks' at a time on the driver
        rows = frame.toLocalIterator(prefetchPartitions=True)
    for row in rows:
        yield row["kind"], row["key"], read_output(row["payload"], row["path"])


def _window_specs(
    spark: SparkSession, tx: str, plan: WindowPlan, roles: list[tuple[str, Window]]
) -> tuple[PreparedWindowSpec, ...]:
    counts = ", ".join(f"count(DISTINCT customer_id) FILTER (WHERE ts < {literal(w.cutoff)})" for _, w in roles)
    customers = spark.sql(f"SELECT {counts} FROM {tx}").collect()[0]
    return tuple(
        PreparedWindowSpec(role, window, role != "score" or plan.scoring_labels_observed, int(n))
        for (role, window), n in zip(roles, customers, strict=True)
    )
