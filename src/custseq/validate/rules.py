"""Declarative row rules: a name, a SQL predicate over the staged table, a reason a person can read.

Rules are checked in order; a row is quarantined under the first rule it breaks. ``flag`` rules keep
the row and only mark it. Predicates use only canonical column names; values are bound parameters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from custseq.config import ValidationConfig
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
    """
    rules = [
        Rule("missing_customer_id", "customer_id IS NULL", "customer id is empty"),
        Rule(
            "placeholder_customer_id",
            "list_contains($placeholder_ids, lower(customer_id))",
            "customer id is a placeholder (NULL, None, NaN, N/A…), not a customer",
            params={"placeholder_ids": list(PLACEHOLDER_IDS)},
        ),
    ]
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
        if name not in ("ts", "amount", "event"):
            rules.append(
                Rule(
                    f"unparsable_{name}",
                    f"{name}__present AND {name} IS NULL",
                    f"{_label(name)} could not be parsed",
                )
            )
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


def _label(name: str) -> str:
    return {"ts": "timestamp", "signup_ts": "signup timestamp", "is_refund": "is_refund"}.get(name, name)
