"""Declarative row rules: a name, a SQL predicate over the staged table, a reason a person can read.

Rules are checked in order; a row is quarantined under the first rule it breaks. ``flag`` rules keep
the row and only mark it. Predicates use only canonical column names; values are bound parameters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from custseq.config import ValidationConfig
from custseq.io.csv_records import BLANK_LINE, UNREADABLE_LINE, WRONG_FIELD_COUNT
from custseq.io.sources import RAW_ROW
from custseq.validate.currencies import ISO_4217
from custseq.validate.parse import PLACEHOLDER_IDS, Staged


@dataclass(frozen=True)
class Rule:
    """One validation rule."""

    name: str
    predicate: str  # SQL boolean expression over the staged table (identifiers from schema.py only)
    reason: str
    action: Literal["quarantine", "flag"] = "quarantine"
    params: dict[str, Any] = field(default_factory=dict)  # bound values, referenced as $name
    # Checked after the other rules, among the rows that passed them; the predicate reads those rows as {valid}.
    among_valid: bool = False


def duplicate_predicate(staged: Staged, cfg: ValidationConfig, dup_table: str) -> str | None:
    """SQL of the duplicate-row rule, or None when exact duplicates are kept.

    In ``auto`` mode an exact duplicate is quarantined unless the table has no order id and the row's
    timestamp is a date without a time: then it cannot be told apart from a second real purchase that day
    (as in CDNOW). The decision is per row, so rows elsewhere in the table (e.g. future ones) cannot change it.
    """
    if cfg.duplicates == "keep":
        return None
    predicate = f"row_id IN (SELECT row_id FROM {dup_table})"
    if cfg.duplicates == "auto" and staged.table == "transactions" and not staged.has("order_id"):
        predicate += " AND ts <> date_trunc('day', ts)"
    return predicate


def rules_for(
    staged: Staged,
    cfg: ValidationConfig,
    *,
    future_cutoff: dt.datetime | None = None,
    dup_table: str | None = None,
    bad_lines: str | None = None,
    today: dt.date | None = None,
) -> list[Rule]:
    """The rules that apply to a staged table, in priority order.

    Parameters
    ----------
    staged
        The staged table; only rules whose columns are present apply.
    cfg
        Thresholds and switches.
    future_cutoff
        When given (and ``cfg.future_rows == "quarantine"``), rows at or after it are quarantined.
    dup_table
        A table of ``row_id`` values that repeat an earlier row exactly.
    bad_lines
        A table of the file's lines that could not be read (:func:`custseq.io.sources.bad_lines_table`).
    today
        The day the plausible date range ends by default (with the as-of date); None = the clock's.
    """
    rules = _bad_line_rules(bad_lines) if bad_lines else []
    rules.append(Rule("missing_customer_id", "customer_id IS NULL", "customer id is empty"))
    rules.append(
        Rule(
            "placeholder_customer_id",
            "list_contains($placeholder_ids, lower(customer_id))",
            "customer id is a placeholder (NULL, None, NaN, N/A…), not a customer",
            params={"placeholder_ids": list(PLACEHOLDER_IDS)},
        )
    )
    for name in ("ts", "amount", "event"):
        if not staged.has(name):
            continue
        if name in staged.checked:
            rules.append(Rule(f"missing_{name}", f"NOT {name}__present", f"{_label(name)} is empty"))
            rules.append(
                Rule(
                    f"unparsable_{name}",
                    f"{name}__present AND {name} IS NULL",
                    f"{_label(name)} could not be parsed",
                )
            )
        else:
            rules.append(Rule(f"missing_{name}", f"{name} IS NULL", f"{_label(name)} is empty"))
    for name in staged.checked:
        if name in ("quantity", "cost"):  # summed as exact decimals: a number beyond their range is a data error
            rules.append(
                Rule(
                    f"unparsable_{name}",
                    f"{name}__present AND ({name} IS NULL OR NOT isfinite({name}) OR abs({name}) > $max_abs_amount)",
                    f"{_label(name)} could not be parsed, or is not a finite number of at most "
                    f"{cfg.max_abs_amount:g} (validation.max_abs_amount)",
                    params={"max_abs_amount": float(cfg.max_abs_amount)},
                )
            )
        elif name not in ("ts", "amount", "event"):
            rules.append(
                Rule(
                    f"unparsable_{name}",
                    f"{name}__present AND {name} IS NULL",
                    f"{_label(name)} could not be parsed",
                )
            )
    if staged.has("ts"):
        rules += date_range_rules(cfg, future_cutoff, today or dt.date.today())
    if staged.has("amount"):
        rules.append(Rule("non_finite_amount", "NOT isfinite(amount)", "amount is infinite or not a number"))
        rules.append(
            Rule(
                "absurd_amount",
                "abs(amount) > $max_abs_amount",
                f"|amount| exceeds {cfg.max_abs_amount:g} (validation.max_abs_amount)",
                params={"max_abs_amount": float(cfg.max_abs_amount)},
            )
        )
    if staged.has("currency"):
        allowed = sorted(c.upper() for c in (cfg.currencies or ISO_4217))
        rules.append(
            Rule(
                "unknown_currency",
                "currency IS NULL OR NOT list_contains($currencies, upper(currency))",
                "currency is empty or not a known code (validation.currencies)",
                params={"currencies": allowed},
            )
        )
    if future_cutoff is not None and cfg.future_rows == "quarantine" and staged.has("ts"):
        rules.append(
            Rule(
                "future_ts",
                "ts >= $future_cutoff",
                f"timestamp is after the as-of date ({(future_cutoff - dt.timedelta(days=1)).date()})",
                params={"future_cutoff": future_cutoff},
            )
        )
    if dup_table and (predicate := duplicate_predicate(staged, cfg, dup_table)):
        rules.append(Rule("duplicate_row", predicate, "exact duplicate of an earlier row"))
    if staged.table == "customers":
        rules.append(
            Rule(
                "duplicate_customer_id",
                "row_id IN (SELECT row_id FROM (SELECT row_id, row_number() OVER "
                "(PARTITION BY customer_id ORDER BY row_id) AS k FROM {valid}) WHERE k > 1)",
                "customer id appears in an earlier valid row of the customers table; the first valid row is kept",
                among_valid=True,
            )
        )
    if staged.table == "events":
        rules.append(
            Rule(
                "event_without_transactions",
                "customer_id NOT IN (SELECT customer_id FROM clean_transactions)",
                "customer has no valid transaction; the event is kept",
                action="flag",
            )
        )
    return rules


def _bad_line_rules(table: str) -> list[Rule]:
    reasons = {
        BLANK_LINE: "the line is blank",
        WRONG_FIELD_COUNT: "the line has more or fewer fields than the header line",
        UNREADABLE_LINE: "the line could not be read as CSV (e.g. a stray or unclosed quote, or a line over 2 MB)",
    }
    return [
        Rule(rule, f"row_id IN (SELECT {RAW_ROW} FROM {table} WHERE rule = '{rule}')", reason)
        for rule, reason in reasons.items()
    ]


def date_range_rules(cfg: ValidationConfig, future_cutoff: dt.datetime | None, today: dt.date) -> list[Rule]:
    """The plausible date range of ``ts``, and the far-past rule; see :class:`ValidationConfig`.

    Without ``max_date`` the range ends ``max_days_after_as_of`` days after the later of today and the as-of date
    (the day before ``future_cutoff``): no row can be dated after the day it was exported, while a back-test
    (an as-of in the past) keeps its later rows. The far-past rule compares a row with the 1st percentile of
    the valid rows' dates up to the as-of date, so that rows after it cannot change which earlier rows pass.
    """
    if cfg.max_date is not None:
        last_day, setting = cfg.max_date, "validation.max_date"
    else:
        as_of = (future_cutoff - dt.timedelta(days=1)).date() if future_cutoff else today
        last_day = max(today, as_of) + dt.timedelta(days=cfg.max_days_after_as_of)
        setting = "validation.max_days_after_as_of after the later of today and the as-of date"
    start = dt.datetime.combine(cfg.min_date, dt.time())
    end = dt.datetime.combine(last_day, dt.time()) + dt.timedelta(days=1)
    rules = [
        Rule(
            "ts_out_of_range",
            "ts < $range_start OR ts >= $range_end",
            f"timestamp is outside the plausible range {cfg.min_date} … {last_day} (validation.min_date; {setting})",
            params={"range_start": start, "range_end": end},
        )
    ]
    if cfg.far_past_years is not None:
        past = "" if future_cutoff is None else " AND ts < $range_past_cutoff"
        days = round(cfg.far_past_years * 365.25)
        rules.append(
            Rule(
                "ts_far_before_data",
                f"ts < ({_early_ts_sql(past)}) - to_days($far_days)",
                f"timestamp is more than {cfg.far_past_years:g} years before the 1st percentile of the data's dates "
                "(validation.far_past_years)",
                params={"far_days": days} | ({"range_past_cutoff": future_cutoff} if future_cutoff else {}),
                among_valid=True,
            )
        )
    return rules


def _early_ts_sql(where: str) -> str:
    """The 1st percentile of the valid rows' timestamps, but never the earliest one: in a table of fewer than 200
    rows that would be the suspect row itself."""
    ranked = (
        "SELECT ts, row_number() OVER (ORDER BY ts) AS k, count(*) OVER () AS n "
        f"FROM {{valid}} WHERE ts IS NOT NULL{where}"
    )
    return f"SELECT ts FROM ({ranked}) WHERE k = greatest(2, ceil(0.01 * n))"


def _label(name: str) -> str:
    return {"ts": "timestamp", "signup_ts": "signup timestamp", "is_refund": "is_refund"}.get(name, name)
