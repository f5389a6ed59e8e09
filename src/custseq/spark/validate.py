"""Validation on Spark: read, map, stage, apply the shared rules, quarantine, account.

The rules are :func:`custseq.validate.rules.rules_for`'s own, their DuckDB predicates read as Spark SQL
(:func:`custseq.spark.sql.spark_sql`); the order, the first-rule-broken verdict, the rules checked among the
valid rows, the row accounting and the quarantine files follow :func:`custseq.validate.quarantine.apply`.
Clean tables are registered as temp views ``clean_<table>`` and cached.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custseq.config import RunConfig, ValidationConfig
from custseq.errors import ConfigError, EmptyTableError
from custseq.io.mapping import resolve
from custseq.io.sources import RAW_ROW
from custseq.io.tables import Tables
from custseq.schema import ROW_ID, TABLES, quote_ident
from custseq.spark.read import read_raw
from custseq.spark.sql import spark_sql
from custseq.spark.stage import stage
from custseq.validate.currencies import refuse_mixed_currencies
from custseq.validate.parse import Staged
from custseq.validate.quarantine import CleanTable, _clean_select, check_row_accounting
from custseq.validate.rules import Rule, rules_for
from custseq.validate.tables import ValidationReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def validate_on_spark(
    spark: SparkSession,
    tables: Tables,
    config: RunConfig,
    *,
    quarantine_dir: Path | None = None,
    future_cutoff: dt.datetime | None = None,
) -> ValidationReport:
    """:func:`custseq.validate.tables.validate_into` on Spark: clean tables as views ``clean_<table>``.

    Raises
    ------
    CustseqError
        As the DuckDB engine: unreadable source, missing column, empty table, ambiguous timestamps, several
        currencies.
    """
    columns = tables.columns or config.columns
    mappings, clean, integer = {}, {}, {}
    for name, source in tables.present():
        raw = read_raw(spark, source)
        user_columns = [c for c in raw.columns if c != RAW_ROW]
        cmap = resolve(TABLES[name], user_columns, getattr(columns, name), detect=columns.detect)
        cutoff = future_cutoff if name != "customers" else None
        staged, frame = stage(spark, raw, cmap, config.validation, config.sequence.max_category_share, before=cutoff)
        clean[name] = apply_rules(spark, staged, frame, raw, config.validation, future_cutoff=cutoff,
                                  quarantine_dir=quarantine_dir)  # fmt: skip
        mappings[name] = cmap
        integer[name] = staged.integer_ids
        if name == "transactions" and staged.has("currency"):
            _refuse_mixed_currencies(spark, clean[name].sql_name, cutoff, config.validation.mixed_currencies)
    return ValidationReport(mappings, clean, integer)


def apply_rules(
    spark: SparkSession,
    staged: Staged,
    frame: DataFrame,
    raw: DataFrame,
    cfg: ValidationConfig,
    *,
    future_cutoff: dt.datetime | None = None,
    quarantine_dir: Path | None = None,
) -> CleanTable:
    """:func:`custseq.validate.quarantine.apply` on Spark; the clean rows become the cached view ``clean_<table>``."""
    dup_table = _duplicate_rows(spark, staged, raw) if cfg.duplicates != "keep" else None
    rules = rules_for(staged, cfg, future_cutoff=future_cutoff, dup_table=dup_table)
    first_pass = [r for r in rules if r.action == "quarantine" and not r.among_valid]
    flags = [r for r in rules if r.action == "flag"]
    judged = spark.sql(
        f"SELECT *, {_first_rule_case(first_pass)} AS __rule, {_first_rule_case(flags)} AS __flag FROM {staged.sql_name}"
    ).localCheckpoint()
    for rule in (r for r in rules if r.among_valid):
        judged.createOrReplaceTempView("__judged")
        predicate = spark_sql(rule.predicate.format(valid="(SELECT * FROM __judged WHERE __rule IS NULL)"), rule.params)
        judged = (
            spark.sql(
                f"SELECT *, CASE WHEN __rule IS NULL AND coalesce(({predicate}), false) THEN '{rule.name}' "
                "ELSE __rule END AS __rule_next FROM __judged"
            )
            .drop("__rule")
            .withColumnRenamed("__rule_next", "__rule")
            .localCheckpoint()
        )
    judged.createOrReplaceTempView("__judged")
    rule_counts = {r: n for r, n in spark.sql(
        "SELECT __rule, count(*) AS n FROM __judged WHERE __rule IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
    ).collect()}  # fmt: skip
    flag_counts = {r: n for r, n in spark.sql(
        "SELECT __flag, count(*) FROM __judged WHERE __rule IS NULL AND __flag IS NOT NULL GROUP BY 1"
    ).collect()}  # fmt: skip
    kinds = dict(staged.kinds)
    sql_name = f"clean_{staged.table}"
    clean = spark.sql(f"SELECT {_clean_select(staged)} FROM __judged WHERE __rule IS NULL").cache()
    clean.createOrReplaceTempView(sql_name)
    if staged.table == "transactions":
        kinds["is_refund"] = TABLES["transactions"].column("is_refund").kind
    rows_in = raw.count()
    rows_used = clean.count()
    rows_quarantined = sum(rule_counts.values())
    check_row_accounting(staged.table, rows_in, rows_used, rows_quarantined)
    reasons = {r.name: r.reason for r in rules}
    if quarantine_dir is not None:
        try:
            _write_quarantine(spark, raw, judged, staged.table, reasons, quarantine_dir)
        except OSError as e:
            raise ConfigError(
                f"cannot write the quarantined rows into {quarantine_dir} ({e.strerror or e}); pass a folder you "
                "can write with --quarantine-dir"
            ) from None
    if rows_used == 0:
        top = max(rule_counts, key=rule_counts.__getitem__)
        raise EmptyTableError(
            f"no {staged.table} row passed validation; {rule_counts[top]} of {rows_in} broke rule {top!r} "
            f"({reasons[top]}); check the column mapping and formats"
        )
    notes = list(staged.notes)
    if dup_table:
        kept = spark.sql(
            f"SELECT count(*) FROM __judged WHERE __rule IS NULL AND row_id IN (SELECT row_id FROM {dup_table})"
        ).collect()[0][0]
        if kept:
            notes.append(
                f"{staged.table}: {kept:,} exact duplicate rows kept (dates without a time and no order id: identical "
                "rows can be separate purchases on one day); set validation.duplicates = 'quarantine' to remove them"
            )
    return CleanTable(
        staged.table, sql_name, kinds, rows_in, rows_used, rows_quarantined, rule_counts, flag_counts, reasons,
        tuple(notes),
    )  # fmt: skip


def _duplicate_rows(spark: SparkSession, staged: Staged, raw: DataFrame) -> str:
    """View ``dup_<table>``: the ``row_id`` of every raw row that repeats an earlier one exactly."""
    cols = [c for c in raw.columns if c != RAW_ROW]
    partition = ", ".join(quote_ident(c) for c in cols)
    name = f"dup_{staged.table}"
    spark.sql(
        f"SELECT {RAW_ROW} AS row_id FROM (SELECT {RAW_ROW}, min({RAW_ROW}) OVER (PARTITION BY {partition}) AS first "
        f"FROM {staged.raw_name}) WHERE {RAW_ROW} <> first"
    ).localCheckpoint().createOrReplaceTempView(name)
    return name


def _first_rule_case(rules: list[Rule]) -> str:
    if not rules:
        return "CAST(NULL AS STRING)"
    whens = " ".join(f"WHEN coalesce(({spark_sql(r.predicate, r.params)}), false) THEN '{r.name}'" for r in rules)
    return f"CASE {whens} END"


def _write_quarantine(
    spark: SparkSession, raw: DataFrame, judged: DataFrame, table: str, reasons: dict[str, str], folder: Path
) -> None:
    """``<table>.parquet`` and ``<table>.flagged.parquet`` as the DuckDB engine writes them (collected: quarantined
    rows are few, and the file is one Parquet file per table)."""
    from pyspark.sql import functions as F

    folder.mkdir(parents=True, exist_ok=True)
    raw_cols = [raw[c] for c in raw.columns if c != RAW_ROW]
    for column, suffix in (("__rule", ""), ("__flag", ".flagged")):
        hit = judged[column].isNotNull() & (judged["__rule"].isNull() if suffix else F.lit(True))
        rows = (
            judged.where(hit)
            .join(raw, judged[ROW_ID] == raw[RAW_ROW])
            .select(judged[ROW_ID].alias("row_number"), judged[column].alias("rule"), *raw_cols)
            .orderBy("row_number")
            .toArrow()
        )
        path = folder / f"{table}{suffix}.parquet"
        if rows.num_rows == 0:
            path.unlink(missing_ok=True)
            continue
        reason = pa.array([reasons[r] for r in rows.column("rule").to_pylist()], pa.string())
        pq.write_table(rows.add_column(2, "reason", reason), path)


def _refuse_mixed_currencies(spark: SparkSession, clean: str, before: dt.datetime | None, mode: str) -> None:
    """:func:`custseq.validate.currencies.refuse_mixed_currencies` on the counts of each currency, counted by Spark.

    The check itself runs on DuckDB over a stand-in table with one row per counted row, so that its shares and
    message are the DuckDB engine's own.
    """
    if mode == "allow":
        return
    where = "currency IS NOT NULL" + (f" AND ts < {spark_sql('$b', {'b': before})}" if before is not None else "")
    counts = spark.sql(f"SELECT upper(currency) AS currency, count(*) AS n FROM {clean} WHERE {where} GROUP BY 1")
    with duckdb.connect() as con:
        con.register("__counts", counts.toArrow())
        con.execute("CREATE VIEW stand_in AS SELECT currency FROM __counts, range(n)")
        refuse_mixed_currencies(con, "stand_in", None, mode)
