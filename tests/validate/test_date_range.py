"""A plausible date range: one typo in a date cannot stretch the history over decades of windows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from custseq.config import RunConfig, ValidationConfig, WindowConfig
from custseq.errors import ConfigError
from custseq.io.engine import connect
from custseq.validate.rules import date_range_rules
from custseq.validate.tables import validate_tables
from custseq.windows import cutoff_of, data_span, plan_windows

WINDOWS = WindowConfig(horizon_days=30)


DAYS = pd.date_range("2022-01-01", "2023-12-31", periods=300)


def two_years(tmp_path: Path, *extra: str, name: str = "tx.csv") -> Path:
    """300 rows over 2022-2023 (40 customers), then the extra timestamps, one row each."""
    days = DAYS
    lines = ["customer_id,ts,amount", *(f"c{i % 40},{d:%Y-%m-%d},{i % 7 + 1}" for i, d in enumerate(days))]
    lines += [f"typo,{ts},5" for ts in extra]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def validate_and_plan(path: Path, config: RunConfig | None = None, as_of: dt.date | None = None):
    con = connect()
    future = cutoff_of(as_of) if as_of else None
    table = validate_tables(con, path, config=config, future_cutoff=future).tables["transactions"]
    plan = plan_windows(*data_span(con), WINDOWS)
    con.close()
    return table, plan


@pytest.mark.parametrize(
    "typo, rule",
    [
        ("9999-12-31", "ts_out_of_range"),  # was an OverflowError
        ("0001-01-01", "ts_out_of_range"),  # was ~24,600 windows, still running after 120 s
        ("1900-01-01", "ts_out_of_range"),  # was 1,509 windows and 46 s
        ("2099-01-01", "ts_out_of_range"),  # was "as of 2099-01-01", 925 windows, no warning
        ("2012-03-01", "ts_far_before_data"),  # after 1970, but a decade before the rest of the data
    ],
)
def test_one_date_typo_is_quarantined_and_the_windows_stay_as_they_were(tmp_path, typo, rule):
    _, clean_plan = validate_and_plan(two_years(tmp_path, name="clean.csv"))
    table, plan = validate_and_plan(two_years(tmp_path, typo))
    assert table.rule_counts == {rule: 1}
    assert (table.rows_in, table.rows_used) == (301, 300)
    assert plan == clean_plan
    assert (plan.data_start.date(), plan.data_end.date()) == (dt.date(2022, 1, 1), dt.date(2023, 12, 31))
    assert len(plan.training) == 23


def test_out_of_range_reason_names_the_range_and_the_settings():
    cfg = ValidationConfig(min_date=dt.date(2000, 1, 1))
    rules = date_range_rules(cfg, cutoff_of(dt.date(2023, 12, 31)), today=dt.date(2023, 6, 1))
    assert rules[0].reason == (
        "timestamp is outside the plausible range 2000-01-01 … 2024-01-02 (validation.min_date; "
        "validation.max_days_after_as_of after the later of today and the as-of date)"
    )
    assert rules[0].params == {"range_start": dt.datetime(2000, 1, 1), "range_end": dt.datetime(2024, 1, 3)}
    explicit = date_range_rules(ValidationConfig(max_date=dt.date(2023, 12, 31)), None, today=dt.date(2030, 1, 1))
    assert explicit[0].params["range_end"] == dt.datetime(2024, 1, 1)
    assert [r.name for r in date_range_rules(ValidationConfig(far_past_years=None), None, dt.date(2023, 1, 1))] == [
        "ts_out_of_range"
    ]


def test_the_range_is_configurable(tmp_path):
    path = two_years(tmp_path, "1965-06-01")
    cfg = RunConfig(validation=ValidationConfig(min_date=dt.date(1960, 1, 1), far_past_years=None))
    table, plan = validate_and_plan(path, cfg)
    assert table.rows_quarantined == 0 and plan.data_start.date() == dt.date(1965, 6, 1)
    late = RunConfig(validation=ValidationConfig(max_date=dt.date(2023, 6, 30)))
    table, _ = validate_and_plan(path, late)
    # 1965 (before the default min_date) and every row after 2023-06-30
    assert table.rule_counts == {"ts_out_of_range": 1 + sum(DAYS > "2023-06-30")}


def test_a_back_test_keeps_the_rows_after_its_as_of(tmp_path):
    # as-of in the past: the later rows are real (they label the scoring window), not out of range.
    table, _ = validate_and_plan(two_years(tmp_path), as_of=dt.date(2022, 12, 31))
    assert table.rows_quarantined == 0


def test_rows_after_the_as_of_cannot_change_which_earlier_rows_look_far_past(tmp_path):
    # The reference is the k-th earliest valid date, k = max(2, 1 % of the rows) counted up to as-of only: with
    # 301 rows it is the third data day. Counting 600 later rows too would move it to the ninth, and flag this row.
    as_of = dt.date(2023, 12, 31)
    between = (DAYS[5] - pd.Timedelta(days=round(5 * 365.25))).strftime("%Y-%m-%d")
    later = [f"2024-{m:02d}-01" for m in range(1, 13)] * 50
    alone, _ = validate_and_plan(two_years(tmp_path, between, name="a.csv"), as_of=as_of)
    with_later, _ = validate_and_plan(two_years(tmp_path, between, *later, name="b.csv"), as_of=as_of)
    assert alone.rule_counts == with_later.rule_counts == {}
    far = (DAYS[2] - pd.Timedelta(days=round(5 * 365.25) + 1)).strftime("%Y-%m-%d")
    flagged, _ = validate_and_plan(two_years(tmp_path, far, *later, name="c.csv"), as_of=as_of)
    assert flagged.rule_counts == {"ts_far_before_data": 1}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_date": dt.date(1960, 1, 1)}, "max_date (1960-01-01) must be from min_date (1970-01-01)"),
        ({"max_date": dt.date(9999, 12, 31)}, "to 2999-12-31"),
        ({"max_days_after_as_of": -1}, "max_days_after_as_of must be 0 to 36525"),
        ({"far_past_years": 0}, "far_past_years must be above 0"),
    ],
)
def test_impossible_ranges_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ValidationConfig(**kwargs)
