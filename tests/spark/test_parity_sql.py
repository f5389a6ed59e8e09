"""The shared rule predicates read as Spark SQL, and the engine switch; no SparkSession needed (fast)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from custseq.config import EngineConfig, RunConfig, ValidationConfig
from custseq.errors import ConfigError
from custseq.pipelines.prepare import ENGINES, prepare
from custseq.spark.sql import literal, spark_sql


def test_literals_are_spark_sql_without_time_zones():
    assert literal(dt.datetime(2023, 1, 31, 12, 5)) == "TIMESTAMP_NTZ '2023-01-31 12:05:00'"
    assert literal(dt.date(2023, 1, 31)) == "DATE '2023-01-31'"
    assert literal("it's \\d") == "'it\\'s \\\\d'"
    assert literal(["a", 1, 2.5, None, True]) == "array('a', 1, 2.5, NULL, true)"


def test_duckdb_functions_of_the_rules_are_rewritten_and_values_bound():
    sql = spark_sql(
        "list_contains($ids, lower(customer_id)) OR NOT isfinite(amount) OR ts < $start - to_days($days)",
        {"ids": ["n/a"], "start": dt.datetime(2020, 1, 1), "days": 5},
    )
    assert sql == (
        "array_contains(array('n/a'), lower(customer_id)) OR NOT (NOT isnan(amount) AND abs(amount) <> "
        "double('inf')) OR ts < TIMESTAMP_NTZ '2020-01-01 00:00:00' - make_dt_interval(5)"
    )


def test_every_rule_of_the_validation_module_has_a_spark_form():
    from custseq.schema import Kind
    from custseq.validate.parse import Staged
    from custseq.validate.rules import rules_for

    kinds = {"customer_id": Kind.ID, "ts": Kind.TIMESTAMP, "amount": Kind.NUMBER, "quantity": Kind.NUMBER,
             "currency": Kind.CATEGORY, "order_id": Kind.ID}  # fmt: skip
    staged = Staged("transactions", "stg", "raw", kinds, ("ts", "amount", "quantity"))
    cfg = ValidationConfig(future_rows="quarantine")
    for rule in rules_for(staged, cfg, future_cutoff=dt.datetime(2023, 2, 1), dup_table="dup"):
        translated = spark_sql(rule.predicate.format(valid="(SELECT * FROM v)"), rule.params)
        assert "$" not in translated and "list_contains" not in translated and "isfinite" not in translated


def test_an_unknown_duckdb_function_is_refused_not_passed_on():
    with pytest.raises(ConfigError, match="list_sort"):
        spark_sql("list_sort(x) IS NULL")


def test_spark_engine_not_loaded_is_a_clear_config_error(monkeypatch, tmp_path):
    monkeypatch.delitem(ENGINES, "spark", raising=False)
    config = dataclasses.replace(RunConfig(), engine=EngineConfig(name="spark"))
    with pytest.raises(ConfigError, match=r"import custseq\.spark"):
        prepare(None, config, tmp_path)  # type: ignore[arg-type]


def test_engine_name_is_checked():
    with pytest.raises(ConfigError, match="duckdb or spark"):
        EngineConfig(name="polars")  # type: ignore[arg-type]
