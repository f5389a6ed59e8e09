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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custseq.config import RunConfig, ValidationConfig
from custseq.errors import ConfigError, EmptyTableError
from custseq.io.mapping import resolve
from custseq.io.sources import RAW_ROW, bad_lines_table
from custseq.io.tables import Tables
from custseq.schema import ROW_ID, TABLES, Kind, quote_ident
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
        read = read_raw(spark, source)
        raw, rows_in = read.frame, read.rows
        user_columns = [c for c in raw.columns if c != RAW_ROW]
        cmap = resolve(TABLES[name], user_columns, getattr(columns, name), detect=columns.detect)
        cutoff = future_cutoff if name != "customers" else None
        staged, frame = stage(spark, raw, cmap, config.validation, config.sequence.max_category_share, before=cutoff)
        bad_lines = None
        if read.bad_lines is not None:
            bad_lines = bad_lines_table(staged.raw_name)
            read.bad_lines.createOrReplaceTempView(bad_lines)
        clean[name] = apply_rules(spark, staged, frame, raw, rows_in, config.validation, future_cutoff=cutoff,
                                  quarantine_dir=quarantine_dir, bad_lines=bad_lines)  # fmt: skip
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
    rows_in: int,
    cfg: ValidationConfig,
    *,
    future_cutoff: dt.datetime | None = None,
    quarantine_dir: Path | None = None,
    bad_lines: str | None = None,
) -> CleanTable:
    """:func:`custseq.validate.quarantine.apply` on Spark; the clean rows become the cached view ``clean_<table>``.

    ``bad_lines`` names the view of the source's lines that are not rows (:class:`custseq.spark.read.RawTable`).
    """
    dup_table = _duplicate_rows(spark, staged, raw) if cfg.duplicates != "keep" else None
    rules = rules_for(staged, cfg, future_cutoff=future_cutoff, dup_table=dup_table, bad_lines=bad_lines)
    first_pass = [r for r in rules if r.action == "quarantine" and not r.among_valid]
    flags = [r for r in rules if r.action == "flag"]
    verdict = f"{_first_rule_case(first_pass)} AS __rule, {_first_rule_case(flags)} AS __flag"
    judged = spark.sql(f"SELECT *, {verdict} FROM {staged.sql_name}").cache()
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
            .cache()
        )
    judged.createOrReplaceTempView("__judged")
    duplicates = (
        f"LEFT JOIN {dup_table} d ON d.row_id = j.row_id" if dup_table else "LEFT JOIN (SELECT 1 AS row_id) d ON false"
    )
    kept_duplicate = "j.__rule IS NULL AND d.row_id IS NOT NULL" if dup_table else "false"
    verdicts = spark.sql(
        "SELECT j.__rule, CASE WHEN j.__rule IS NULL THEN j.__flag END AS __flag, count(*) AS n, "
        f"count_if({kept_duplicate}) AS kept_duplicates FROM __judged j {duplicates} GROUP BY 1, 2"
    ).collect()
    rule_counts: dict[str, int] = {}
    flag_counts: dict[str, int] = {}
    for rule_name, flag, n, _ in verdicts:
        if rule_name is not None:
            rule_counts[rule_name] = rule_counts.get(rule_name, 0) + n
        elif flag is not None:
            flag_counts[flag] = n
    rule_counts = dict(sorted(rule_counts.items(), key=lambda item: (-item[1], item[0])))
    kept = sum(v[3] for v in verdicts)
    kinds = dict(staged.kinds)
    sql_name = f"clean_{staged.table}"
    clean = spark.sql(f"SELECT {_clean_select(staged)} FROM __judged WHERE __rule IS NULL").cache()
    clean.createOrReplaceTempView(sql_name)
    if staged.table == "transactions":
        kinds["is_refund"] = Kind.BOOLEAN
    rows_used = sum(v[2] for v in verdicts if v[0] is None)
    rows_quarantined = sum(rule_counts.values())
    check_row_accounting(staged.table, rows_in, rows_used, rows_quarantined)
    reasons = {r.name: r.reason for r in rules}
    if quarantine_dir is not None:
        try:
            _write_quarantine(spark, raw, staged.raw_name, judged, staged.table, reasons, quarantine_dir)
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
    ).cache().createOrReplaceTempView(name)
    return name


def _first_rule_case(rules: list[Rule]) -> str:
    if not rules:
        return "CAST(NULL AS STRING)"
    whens = " ".join(f"WHEN coalesce(({spark_sql(r.predicate, r.params)}), false) THEN '{r.name}'" for r in rules)
    return f"CASE {whens} END"


def _write_quarantine(
    spark: SparkSession,
    raw: DataFrame,
    raw_view: str,
    judged: DataFrame,
    table: str,
    reasons: dict[str, str],
    folder: Path,
) -> None:
    """``<table>.parquet`` and ``<table>.flagged.parquet`` as the DuckDB engine writes them (collected: quarantined
    rows are few, and the file is one Parquet file per table)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw_cols = ", ".join(f"r.{quote_ident(c)}" for c in raw.columns if c != RAW_ROW)
    judged.createOrReplaceTempView("__judged")
    hits = spark.sql(
        f"SELECT j.{ROW_ID} AS row_number, j.__rule, j.__flag, {raw_cols} FROM __judged j "
        f"JOIN {raw_view} r ON r.{RAW_ROW} = j.{ROW_ID} WHERE j.__rule IS NOT NULL OR j.__flag IS NOT NULL "
        "ORDER BY row_number"
    ).toArrow()
    for column, suffix in (("__rule", ""), ("__flag", ".flagged")):
        hit = pc.is_valid(hits[column])
        if suffix:
            hit = pc.and_(hit, pc.is_null(hits["__rule"]))
        rows = hits.filter(hit)
        rows = rows.drop_columns(["__rule", "__flag"]).add_column(1, "rule", rows[column])
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
